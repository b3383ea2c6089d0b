//! The emission schedule: what each epoch releases from the pool. Pure, integer.
//!
//! The whole supply (100,000,000 CXT) is minted once, into the pool, by the genesis
//! record (epoch 0), which seals the schedule. Each later epoch releases
//! `⌊pool · releasePpm / 10⁶⌋` of what the pool holds at its start: exponential decay, so
//! the pool can never be exhausted by rounding up, and nothing is minted after genesis.
//! What an epoch does not pay out (no verified work, or held entries) returns to the pool
//! and is released again by later epochs. At 100 ppm per hourly epoch, the first epoch
//! releases 10,000 CXT and half the pool is released in about 290 days.

use crate::api::settlement::EmissionSchedule;
use crate::api::{BaseUnits, POOL_BASE_UNITS};

/// The schedule an operator runs with by default: the full supply, hourly epochs, 100 ppm.
pub fn default_schedule() -> EmissionSchedule {
    EmissionSchedule {
        supply: BaseUnits(POOL_BASE_UNITS),
        epoch_seconds: 3600,
        release_ppm: 100,
    }
}

/// Why a configured schedule cannot run against a ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The configuration names a value outside its range.
    #[error("{field} = {value} is outside {range}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The accepted range.
        range: &'static str,
    },
    /// The ledger's genesis record sealed another value.
    #[error(
        "the ledger's genesis record sealed {field} = {sealed}, the configuration says {configured}; a schedule cannot change once the ledger exists"
    )]
    Changed {
        /// The field.
        field: &'static str,
        /// The sealed value.
        sealed: u64,
        /// The configured value.
        configured: u64,
    },
}

/// Checks a schedule's values: the supply is the fixed pool, epochs last at least a
/// second, and the release is 1 to 10⁶ ppm.
pub fn check(s: &EmissionSchedule) -> Result<(), ScheduleError> {
    let invalid = |field, value, range| {
        Err(ScheduleError::Invalid {
            field,
            value,
            range,
        })
    };
    if s.supply.0 != POOL_BASE_UNITS {
        return invalid(
            "supply",
            s.supply.0,
            "exactly 100,000,000 CXT (10^14 base units)",
        );
    }
    if s.epoch_seconds == 0 {
        return invalid("epochSeconds", 0, "1..");
    }
    if !(1..=1_000_000).contains(&s.release_ppm) {
        return invalid("releasePpm", u64::from(s.release_ppm), "1..=1000000");
    }
    Ok(())
}

/// Checks the configured schedule against the one the genesis record sealed.
pub fn check_sealed(
    configured: &EmissionSchedule,
    sealed: &EmissionSchedule,
) -> Result<(), ScheduleError> {
    let fields = [
        ("supply", sealed.supply.0, configured.supply.0),
        (
            "epochSeconds",
            sealed.epoch_seconds,
            configured.epoch_seconds,
        ),
        (
            "releasePpm",
            u64::from(sealed.release_ppm),
            u64::from(configured.release_ppm),
        ),
    ];
    for (field, sealed, configured) in fields {
        if sealed != configured {
            return Err(ScheduleError::Changed {
                field,
                sealed,
                configured,
            });
        }
    }
    Ok(())
}

/// What an epoch releases from a pool holding `pool` base units.
pub fn release(s: &EmissionSchedule, pool: u64) -> u64 {
    let r = u128::from(pool) * u128::from(s.release_ppm.min(1_000_000)) / 1_000_000;
    // At most `pool`, so the conversion holds.
    u64::try_from(r).unwrap_or(pool).min(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_releases_ten_thousand_cxt_first_and_halves_in_about_290_days() {
        let s = default_schedule();
        assert_eq!(check(&s), Ok(()));
        assert_eq!(release(&s, POOL_BASE_UNITS), 10_000 * 1_000_000);
        let (mut pool, mut epochs) = (POOL_BASE_UNITS, 0u32);
        while pool > POOL_BASE_UNITS / 2 {
            pool -= release(&s, pool);
            epochs += 1;
        }
        let days = f64::from(epochs) / 24.0;
        assert!((285.0..295.0).contains(&days), "{days} days");
    }

    #[test]
    fn a_changed_schedule_is_refused_naming_the_field() {
        let sealed = default_schedule();
        let mut configured = sealed.clone();
        configured.release_ppm = 200;
        let e = check_sealed(&configured, &sealed).unwrap_err();
        assert!(e.to_string().contains("releasePpm = 100"), "{e}");
        configured = sealed.clone();
        configured.supply = BaseUnits(POOL_BASE_UNITS + 1);
        assert!(matches!(
            check(&configured),
            Err(ScheduleError::Invalid {
                field: "supply",
                ..
            })
        ));
        assert_eq!(check_sealed(&sealed.clone(), &sealed), Ok(()));
    }

    proptest! {
        /// The pool never pays out more than it holds, whatever the schedule and
        /// whatever is returned: the sum of releases never exceeds the supply.
        #[test]
        fn releases_never_exceed_the_supply(
            ppm in 1u32..=1_000_000,
            returned in proptest::collection::vec(0u64..=1_000_000_000, 1..200),
        ) {
            let s = EmissionSchedule { release_ppm: ppm, ..default_schedule() };
            let (mut pool, mut paid) = (POOL_BASE_UNITS, 0u64);
            for r in returned {
                let e = release(&s, pool);
                prop_assert!(e <= pool);
                let back = r.min(e);
                pool = pool - e + back;
                paid += e - back;
                prop_assert_eq!(paid + pool, POOL_BASE_UNITS);
            }
        }
    }
}
