//! Types shared by all three resources: money, ratios, conditions and the API group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every ZopToken resource.
pub const GROUP: &str = "zoptoken.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Base units in one CXT. Six decimals keep the whole 100,000,000 CXT pool
/// (10^14 base units) inside 2^53, so every JSON consumer reads amounts exactly.
pub const BASE_UNITS_PER_CXT: u64 = 1_000_000;

/// The fixed mining pool: 100,000,000 CXT, in base units.
pub const POOL_BASE_UNITS: u64 = 100_000_000 * BASE_UNITS_PER_CXT;
const _: () = assert!(
    POOL_BASE_UNITS < (1u64 << 53),
    "the pool must stay JSON-safe"
);

/// Ratios that feed reward math are integers in per mille: 1000 means 1.0.
pub const PERMILLE: u32 = 1000;

/// A CXT amount in integer base units (1 CXT = 1,000,000 base units). Never a float.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BaseUnits(pub u64);

impl JsonSchema for BaseUnits {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BaseUnits".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "integer",
            "format": "int64",
            "minimum": 0,
            "maximum": POOL_BASE_UNITS,
        })
    }
}

impl BaseUnits {
    /// Whole CXT and the remaining base units, for display.
    pub fn split(self) -> (u64, u64) {
        (self.0 / BASE_UNITS_PER_CXT, self.0 % BASE_UNITS_PER_CXT)
    }
}

impl std::fmt::Display for BaseUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = self.split();
        write!(f, "{whole}.{frac:06} CXT")
    }
}

/// Condition types and reasons used across resources, in one place so that
/// Events, conditions and metric labels agree.
pub mod conditions {
    /// The resource is doing what its spec asks (Device online, task running or done).
    pub const READY: &str = "Ready";
    /// A task's fragments are placed on devices.
    pub const SCHEDULED: &str = "Scheduled";
    /// Results were checked (proof of compute, proof of training).
    pub const VERIFIED: &str = "Verified";
    /// A device's claimed hardware matches what it measured.
    pub const PLAUSIBLE: &str = "HardwarePlausible";
    /// A settlement agrees with the metrics it was reconciled against.
    pub const RECONCILED: &str = "Reconciled";
}

/// Conditions, merged by `type` under server-side apply.
pub type Conditions = Vec<Condition>;

/// Sets `cond` in `list`, keeping the old transition time when the status did not change.
pub fn set_condition(list: &mut Conditions, mut cond: Condition) {
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status == cond.status {
                cond.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = cond;
        }
        None => list.push(cond),
    }
}

/// Operations in one work unit. A work unit is one giga-operation, the same unit as a
/// device's benchmark score (GOP/s), so `weight / score` is the expected run time in
/// seconds on that device.
pub const OPS_PER_WORK_UNIT: u64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn cond(status: &str, secs: i64) -> Condition {
        Condition {
            type_: conditions::READY.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(secs).unwrap()),
        }
    }

    #[test]
    fn base_units_display_whole_and_fraction() {
        assert_eq!(BaseUnits(1_500_001).to_string(), "1.500001 CXT");
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut list = vec![cond("True", 10)];
        set_condition(&mut list, cond("True", 20));
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].last_transition_time,
            cond("True", 10).last_transition_time
        );
        set_condition(&mut list, cond("False", 30));
        assert_eq!(
            list[0].last_transition_time,
            cond("False", 30).last_transition_time
        );
    }
}
