//! Stake derived from the ledger into each Device's `status.stake`: the bonded stake of
//! its provider, as the Settlement chain says. Written under its own field manager, so
//! no other writer of the status removes it, and through the status subresource, which
//! whoever may edit a Device's spec cannot write.

use crate::api::Device;
use crate::ledger::accounts::Ledger;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// The field manager of `status.stake`.
pub const STAKE_MANAGER: &str = "zop-operator-ledger";

/// The devices whose `status.stake` differs from their provider's bonded stake, with the
/// stake they should show. Devices without a status yet are left until they have one.
pub fn changes<'a>(
    devices: impl IntoIterator<Item = &'a Device>,
    ledger: &Ledger,
) -> Vec<(String, u64)> {
    devices
        .into_iter()
        .filter_map(|d| {
            let shown = d.status.as_ref()?.stake.0;
            let bonded = ledger.stake(&d.spec.provider);
            (shown != bonded).then(|| (d.name_any(), bonded))
        })
        .collect()
}

/// Writes the stake of each device in `changes`; a failure is logged and retried on the
/// next pass.
pub async fn write(client: &Client, changes: &[(String, u64)]) {
    let api: Api<Device> = Api::all(client.clone());
    let params = PatchParams::apply(STAKE_MANAGER).force();
    for (name, stake) in changes {
        let patch = serde_json::json!({
            "apiVersion": "zoptoken.io/v1alpha1",
            "kind": "Device",
            "status": { "stake": stake },
        });
        match api.patch_status(name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {
                tracing::info!(device = %name, stake, "derived the device's stake from the ledger")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(error = %e, device = %name, "writing a device's stake failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BaseUnits, DeviceStatus};
    use crate::scheduler::fixtures::DeviceBuilder;

    #[test]
    fn devices_show_their_providers_bonded_stake() {
        let mut ledger = Ledger::default();
        let account = crate::ledger::accounts::Account {
            rewards: 10,
            staked: 7,
            ..Default::default()
        };
        ledger.accounts.insert("acme".into(), account);
        let shown = |stake| {
            let mut d = DeviceBuilder::l4("a").build();
            d.status.get_or_insert_with(DeviceStatus::default).stake = BaseUnits(stake);
            d
        };
        assert_eq!(changes([&shown(0)], &ledger), vec![("a".to_string(), 7)]);
        assert!(changes([&shown(7)], &ledger).is_empty());
        // Stake written by hand, or left after an unbond, is brought back to the ledger's.
        let mut other = shown(5);
        other.spec.provider = "other".into();
        assert_eq!(changes([&other], &ledger), vec![("a".to_string(), 0)]);
    }
}
