//! The hash chain that makes settlements tamper-evident. Each settlement's hash is
//! SHA-256 over the canonical JSON of its spec with `hash` emptied; the canonical form is
//! serde_json's output, whose field order is the declaration order of the Rust types.

use crate::api::SettlementSpec;
use sha2::{Digest, Sha256};

/// The `previousHash` of epoch 0.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a chain does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// A settlement's stored hash is not the hash of its contents.
    #[error("epoch {epoch}: hash {stored} does not match its contents ({computed})")]
    HashMismatch {
        /// The epoch.
        epoch: u64,
        /// The hash it carries.
        stored: String,
        /// The hash of its contents.
        computed: String,
    },
    /// A settlement does not point at its predecessor.
    #[error("epoch {epoch}: previousHash does not match epoch {prev_epoch}'s hash")]
    BrokenLink {
        /// The epoch.
        epoch: u64,
        /// The epoch before it in the list.
        prev_epoch: u64,
    },
    /// Epochs are not consecutive from the first one.
    #[error("epoch {found} follows epoch {prev}; epochs must be consecutive")]
    Gap {
        /// The epoch before.
        prev: u64,
        /// The epoch found.
        found: u64,
    },
}

/// The hash a settlement spec must carry.
pub fn compute_hash(spec: &SettlementSpec) -> String {
    let mut unsealed = spec.clone();
    unsealed.hash = String::new();
    // Serializing plain data (strings, integers, timestamps) cannot fail.
    let canonical = serde_json::to_vec(&unsealed).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// Fills in `hash` from the contents.
pub fn seal(mut spec: SettlementSpec) -> SettlementSpec {
    spec.hash = compute_hash(&spec);
    spec
}

/// Checks every hash and every link of a chain sorted by epoch and part. Epoch 0 must follow the
/// genesis hash; a list that starts later (a suffix of the chain) trusts its first link.
pub fn verify(chain: &[SettlementSpec]) -> Result<(), ChainError> {
    let mut prev: Option<&SettlementSpec> = None;
    for s in chain {
        let computed = compute_hash(s);
        if computed != s.hash {
            return Err(ChainError::HashMismatch {
                epoch: s.epoch,
                stored: s.hash.clone(),
                computed,
            });
        }
        let expected_prev = match prev {
            // The next epoch's first part, or the next part of the same epoch.
            Some(p)
                if !((s.epoch == p.epoch + 1 && s.part == 0)
                    || (s.epoch == p.epoch && s.part == p.part + 1)) =>
            {
                return Err(ChainError::Gap {
                    prev: p.epoch,
                    found: s.epoch,
                });
            }
            Some(p) => p.hash.as_str(),
            None if s.epoch == 0 => GENESIS_HASH,
            None => s.previous_hash.as_str(),
        };
        if s.previous_hash != expected_prev {
            return Err(ChainError::BrokenLink {
                epoch: s.epoch,
                prev_epoch: prev.map_or(0, |p| p.epoch),
            });
        }
        prev = Some(s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BaseUnits;
    use crate::api::settlement::{EpochWindow, SettlementEntry, SettlementTotals};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn epoch(n: u64, previous_hash: &str) -> SettlementSpec {
        let t = |s: i64| Time(Timestamp::from_second(s).unwrap());
        seal(SettlementSpec {
            epoch: n,
            window: EpochWindow {
                start: t(n as i64 * 3600),
                end: t((n as i64 + 1) * 3600),
            },
            emission: BaseUnits(1_000),
            entries: vec![SettlementEntry {
                provider: "acme".into(),
                work_units: 10,
                quality: 1000,
                reputation: 900,
                stake_boost: 1000,
                reward: BaseUnits(990),
                held: false,
            }],
            totals: SettlementTotals {
                providers: 1,
                work_units: 10,
                reward: BaseUnits(990),
                returned_to_pool: BaseUnits(10),
            },
            pool: BaseUnits(0),
            schedule: None,
            part: 0,
            parts: 1,
            operations: Vec::new(),
            previous_hash: previous_hash.into(),
            hash: String::new(),
        })
    }

    fn chain(len: u64) -> Vec<SettlementSpec> {
        let mut out: Vec<SettlementSpec> = Vec::new();
        for n in 0..len {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_string(), |p| p.hash.clone());
            out.push(epoch(n, &prev));
        }
        out
    }

    #[test]
    fn a_sealed_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(()));
    }

    #[test]
    fn editing_a_reward_breaks_that_epochs_hash() {
        let mut c = chain(3);
        c[1].entries[0].reward = BaseUnits(991);
        assert!(matches!(
            verify(&c),
            Err(ChainError::HashMismatch { epoch: 1, .. })
        ));
    }

    #[test]
    fn resealing_an_edited_epoch_breaks_the_next_link() {
        let mut c = chain(3);
        c[1].entries[0].reward = BaseUnits(991);
        c[1] = seal(c[1].clone());
        assert!(matches!(
            verify(&c),
            Err(ChainError::BrokenLink { epoch: 2, .. })
        ));
    }

    #[test]
    fn a_missing_epoch_is_a_gap() {
        let mut c = chain(3);
        c.remove(1);
        assert!(matches!(
            verify(&c),
            Err(ChainError::Gap { prev: 0, found: 2 })
        ));
    }

    #[test]
    fn the_hash_ignores_its_own_field_only() {
        let a = epoch(0, GENESIS_HASH);
        let mut b = a.clone();
        b.hash = "f".repeat(64);
        assert_eq!(compute_hash(&a), compute_hash(&b));
        b.emission = BaseUnits(1_001);
        assert_ne!(compute_hash(&a), compute_hash(&b));
    }
}
