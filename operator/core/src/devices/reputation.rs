//! Reputation: how verification outcomes move a device's score, how the score decays
//! towards neutral, and when a device is quarantined or retired. Pure; times are Unix
//! seconds. The score weighs placement (`scheduler::placement`) and `minReputation`.
//!
//! - A verified fragment adds `max(1, (1000 − s) / 50)`: slow to build, ten points a
//!   fragment from neutral, less as the score nears 1000.
//! - A failed verification is fraud (an honest device's integer rows always verify): the
//!   score drops to `min(s / 2, 250)`, below the quarantine line whatever it was.
//! - Challenges left unanswered cost 20 (a crash looks the same as a dodge, so it is
//!   cheap); an impossible speed costs 100; a speed 20× below the benchmark costs 60.
//! - Every score decays towards 500 with a half-life of [`HALF_LIFE_S`], so an old
//!   record counts less than a new one, and a quarantine lifts after about two days.
//! - A score below [`QUARANTINE_BELOW`] quarantines the device (no new work);
//!   [`RETIRE_AFTER`] failed verifications retire it for good.

use crate::api::device::Reputation;
use crate::verify::timing::Timing;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A new device's score, and where every score decays to.
pub const NEUTRAL: u32 = 500;
/// Highest score.
pub const MAX: u32 = 1000;
/// Scores at or above this are of good standing: with stake, such a device is first
/// in line for replays (a record well above a newcomer's, earned by verified work).
pub const GOOD_STANDING: u32 = 600;
/// Scores below this are quarantined.
pub const QUARANTINE_BELOW: u32 = 300;
/// Where a failed verification puts a score at most.
pub const FRAUD_CEILING: u32 = 250;
/// Failed verifications that retire a device.
pub const RETIRE_AFTER: u64 = 3;
/// Half-life of the distance from neutral, in seconds (7 days).
pub const HALF_LIFE_S: i64 = 7 * 24 * 3600;
const TIMEOUT_COST: u32 = 20;
const TOO_FAST_COST: u32 = 100;
const TOO_SLOW_COST: u32 = 60;

/// What verification found about one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It verified.
    Verified,
    /// It failed verification.
    Rejected,
    /// Its challenges went unanswered.
    TimedOut,
    /// Its report-back time was implausible.
    Timing(Timing),
}

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It may take work.
    Good,
    /// It gets no new work until its score recovers.
    Quarantined,
    /// Retired for repeated fraud.
    Retired,
}

fn seconds(t: &Option<Time>) -> Option<i64> {
    t.as_ref().map(|t| t.0.as_second())
}

/// The score at `now`, decayed from its last change.
pub fn score_at(r: &Reputation, now: i64) -> u32 {
    let score = r.score.min(MAX);
    let Some(since) = seconds(&r.updated_at) else {
        return score;
    };
    let elapsed = (now - since).max(0) as f64;
    let factor = (-elapsed / HALF_LIFE_S as f64).exp2();
    let distance = f64::from(score) - f64::from(NEUTRAL);
    (f64::from(NEUTRAL) + distance * factor)
        .round()
        .clamp(0.0, f64::from(MAX)) as u32
}

/// The record after `outcome` at `now`.
pub fn apply(r: &Reputation, outcome: Outcome, now: i64) -> Reputation {
    let mut next = r.clone();
    let s = score_at(r, now);
    next.score = match outcome {
        Outcome::Verified => {
            next.succeeded = next.succeeded.saturating_add(1);
            (s + ((MAX - s) / 50).max(1)).min(MAX)
        }
        Outcome::Rejected => {
            next.verification_failures = next.verification_failures.saturating_add(1);
            next.penalties = next.penalties.saturating_add(1);
            (s / 2).min(FRAUD_CEILING)
        }
        Outcome::TimedOut => {
            next.failed = next.failed.saturating_add(1);
            s.saturating_sub(TIMEOUT_COST)
        }
        Outcome::Timing(Timing::Plausible) => s,
        Outcome::Timing(t) => {
            next.abnormal_timings = next.abnormal_timings.saturating_add(1);
            let cost = match t {
                Timing::TooFast { .. } => TOO_FAST_COST,
                _ => TOO_SLOW_COST,
            };
            s.saturating_sub(cost)
        }
    };
    next.updated_at = Timestamp::from_second(now).ok().map(Time);
    next
}

/// Where the record puts the device at `now`.
pub fn standing(r: &Reputation, now: i64) -> Standing {
    if r.verification_failures >= RETIRE_AFTER {
        Standing::Retired
    } else if score_at(r, now) < QUARANTINE_BELOW {
        Standing::Quarantined
    } else {
        Standing::Good
    }
}

/// Seconds until decay alone lifts a quarantine (`None` when not quarantined, retired,
/// or never lifted).
pub fn lifts_in(r: &Reputation, now: i64) -> Option<i64> {
    if standing(r, now) != Standing::Quarantined {
        return None;
    }
    let since = seconds(&r.updated_at)?;
    let distance = f64::from(NEUTRAL) - f64::from(r.score.min(MAX));
    // The decayed score rounds to QUARANTINE_BELOW once distance·2^(−t/H) ≤ needed, that
    // is for t ≥ H·log₂(distance / needed).
    let needed = f64::from(NEUTRAL - QUARANTINE_BELOW) + 0.5;
    let t = (HALF_LIFE_S as f64 * (distance / needed).log2()).ceil() as i64;
    Some((since + t - now).max(1))
}

#[cfg(test)]
mod tests;
