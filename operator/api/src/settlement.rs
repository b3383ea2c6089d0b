//! `Settlement`: one epoch's rewards, hash-chained to the previous epoch's.

use super::common::{BaseUnits, Conditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A settled epoch. The spec is the ledger record, written once and immutable; its
/// `hash` covers every field of the spec but itself, and `previousHash` links it to the
/// settlement of the epoch before, so any edit to history breaks the chain.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Client-side CEL evaluation (`validate()`) only where the operator needs it: the worker
// links no CEL interpreter.
#[cfg_attr(feature = "cel", kube(cel))]
#[kube(
    group = "zoptoken.io",
    version = "v1alpha1",
    kind = "Settlement",
    status = "SettlementStatus",
    shortname = "stl",
    category = "zoptoken",
    derive = "PartialEq",
    doc = "One epoch's rewards from the 100,000,000 CXT pool, hash-chained to the previous epoch.",
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".spec.epoch"),
    printcolumn(name = "Emission", type_ = "integer", json_path = ".spec.emission"),
    printcolumn(
        name = "Providers",
        type_ = "integer",
        json_path = ".spec.totals.providers"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Hash",
        type_ = "string",
        json_path = ".spec.hash",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("a settlement is immutable once written"),
    validation = Rule::new("self.totals.reward <= self.emission")
        .message("totals.reward cannot exceed the epoch's emission")
        .field_path(".totals.reward"),
    validation = Rule::new("self.totals.providers == size(self.entries)")
        .message("totals.providers must equal the number of entries")
        .field_path(".totals.providers"),
    validation = Rule::new("self.epoch == 0 || self.previousHash != '0000000000000000000000000000000000000000000000000000000000000000'")
        .message("only epoch 0 may follow the genesis hash")
        .field_path(".previousHash"),
    validation = Rule::new("self.part < self.parts")
        .message("part must be below parts")
        .field_path(".part"),
    validation = Rule::new("self.epoch == 0 ? has(self.schedule) : !has(self.schedule)")
        .message("schedule is set in epoch 0, the genesis record, and only there")
        .field_path(".schedule"),
)]
#[serde(rename_all = "camelCase")]
pub struct SettlementSpec {
    /// The epoch number, from 0.
    pub epoch: u64,
    /// The time window the epoch covers.
    pub window: EpochWindow,
    /// CXT released from the pool for this epoch by the emission schedule, in base units.
    pub emission: BaseUnits,
    /// One entry per provider that earned in the epoch, sorted by provider.
    #[schemars(length(max = 2000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["provider".into()]))]
    pub entries: Vec<SettlementEntry>,
    /// Sums over the entries.
    pub totals: SettlementTotals,
    /// The pool's balance after this record, in base units: what the previous record
    /// left, less this epoch's emission, plus what it returned.
    #[serde(default)]
    pub pool: BaseUnits,
    /// Epoch 0 only, the genesis record: the emission schedule, sealed for the life of
    /// the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<EmissionSchedule>,
    /// When an epoch's entries exceed one object's bound they are split over `parts`
    /// objects, chained in order; this is part `part`, from 0.
    #[serde(default)]
    pub part: u32,
    /// Objects this epoch's entries are split over, 1 to 64.
    #[serde(default = "one_part")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("parts must be between 1 and 64"))]
    pub parts: u32,
    /// Account operations this epoch records (stake bonded or unbonded, withdrawals), in
    /// the order they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2000))]
    pub operations: Vec<AccountOperation>,
    /// The previous settlement's hash; 64 zeros for epoch 0.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub previous_hash: String,
    /// SHA-256 over this spec's canonical form without this field, in hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: String,
}

fn one_part() -> u32 {
    1
}

/// The emission schedule, declared in the operator's configuration and sealed into the
/// genesis record: exponential decay, each epoch releasing a fixed share of what the pool
/// holds. Nothing is ever minted: the pool starts at `supply` and only pays out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmissionSchedule {
    /// The whole supply, minted once into the pool (100,000,000 CXT).
    pub supply: BaseUnits,
    /// Seconds per epoch.
    #[x_kube(validation = Rule::new("self >= 1").message("epochSeconds must be positive"))]
    pub epoch_seconds: u64,
    /// Parts per million of the pool's balance released each epoch, 1 to 1,000,000.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000000").message("releasePpm must be between 1 and 1000000"))]
    pub release_ppm: u32,
}

/// A change to a provider's account, recorded in the chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountOperation {
    /// A unique id (a withdrawal is recorded, and paid, once per id).
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// The provider account.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
    /// What happens.
    pub kind: OperationKind,
    /// The amount, in base units.
    pub amount: BaseUnits,
    /// Withdrawals: where the payout goes, outside the cluster (opaque here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub destination: Option<String>,
}

/// Account operations.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Stake bonded from the balance.
    Bond,
    /// Stake unbonded: back to the balance after the cool-down.
    Unbond,
    /// A payout out of the balance.
    Withdraw,
    /// A held reward paid to the provider.
    Release,
    /// A held reward returned to the pool.
    Forfeit,
}

/// A half-open time window `[start, end)`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.start < self.end").message("window.start must be before window.end"))]
#[serde(rename_all = "camelCase")]
pub struct EpochWindow {
    /// Inclusive start.
    pub start: Time,
    /// Exclusive end.
    pub end: Time,
}

/// One provider's reward. Factors are per mille: 1000 means ×1.0.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SettlementEntry {
    /// The provider account.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,
    /// Verified work units the provider's devices contributed.
    pub work_units: u64,
    /// Result quality factor, per mille, 0 to 1000.
    #[x_kube(validation = Rule::new("self <= 1000").message("quality must be between 0 and 1000"))]
    pub quality: u32,
    /// Reputation factor, per mille, 0 to 1000.
    #[x_kube(validation = Rule::new("self <= 1000").message("reputation must be between 0 and 1000"))]
    pub reputation: u32,
    /// Stake boost, per mille, 1000 (no stake) to 2000.
    #[x_kube(validation = Rule::new("self >= 1000 && self <= 2000").message("stakeBoost must be between 1000 and 2000"))]
    pub stake_boost: u32,
    /// The reward, in base units.
    pub reward: BaseUnits,
    /// Held: reconciliation against measured metrics contradicted the credited work. The
    /// reward leaves the pool but is paid only when an admin releases it, and returns to
    /// the pool when forfeited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Sums over a settlement's entries.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SettlementTotals {
    /// Providers paid.
    pub providers: u32,
    /// Verified work units.
    pub work_units: u64,
    /// Rewards paid, in base units.
    pub reward: BaseUnits,
    /// Emission not paid out (rounding remainders, or no work), returned to the pool.
    pub returned_to_pool: BaseUnits,
}

/// Open until reconciled against metrics, then Finalized.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
pub enum SettlementPhase {
    /// Written; not yet reconciled.
    #[default]
    Open,
    /// Reconciled; payable.
    Finalized,
}

/// What the ledger observed about a settlement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SettlementStatus {
    /// Open or Finalized.
    #[serde(default)]
    pub phase: SettlementPhase,
    /// The check of claimed work against Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
    /// Latest observations, merged by type (Reconciled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Claimed work against measured work.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    /// Whether claims and measurements agree within tolerance.
    pub matched: bool,
    /// Work units the settlement pays for.
    pub claimed_work_units: u64,
    /// Work units the metrics recorded for the window.
    pub measured_work_units: u64,
    /// When the check ran.
    pub checked_at: Time,
    /// A human-readable explanation.
    #[serde(default)]
    pub message: String,
}
