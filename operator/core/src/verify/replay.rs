//! Replay: a sampled share of accepted results executed again on a device of another
//! provider, and the votes settled. Pure.
//!
//! - **Sampling.** When a result is accepted (verified by its challenges, or recorded for
//!   a kind without a proof), the gateway draws it for replay with probability
//!   [`rate`]: the task's `replayRate`, scaled per device as BOINC's adaptive replication
//!   does: ×4 for a new device (fewer than 10 verified results), ×8 for a suspicious one
//!   (any failed verification or abnormal timing), ×¼ for a long clean record (100
//!   verified results or more), capped at 1.
//! - **Votes.** A replay is an assignment of the one fragment (`Assignment::replay`),
//!   placed on a device whose provider has not voted on that fragment yet. Each accepted
//!   result of the fragment, the original's and the replays', is a vote for its digest
//!   (with a model's exact loss and correct count: [`super::quality::vote`]).
//! - **Quorum.** `quorum` votes for one digest settle the fragment: results with another
//!   digest are rejected (the minority is penalized). Until then, one more replay is
//!   requested at a time, so a disagreement goes to a third device; after
//!   `quorum + TIEBREAKS` votes without a quorum, a strict plurality settles it, and a
//!   tie rejects every vote (the fragment is executed again from scratch). A quorum of 1
//!   replays nothing.

use crate::api::device::Reputation;
use crate::api::protocol::Check;
use crate::tasks::assignment::{Assignment, State, is_paid, is_rejected};
use std::collections::{BTreeMap, BTreeSet};

/// Attempt numbers of replay records start here, so their names never meet a regular
/// assignment's (`record::name` is task, first fragment and attempt).
pub const ATTEMPT_BASE: u32 = 1_000;
/// Votes beyond the quorum asked for before a plurality decides.
pub const TIEBREAKS: u32 = 2;
/// Replays of one fragment lost (device gone, pod failed) before replay gives up on it.
pub const MAX_LOST: u32 = 3;

/// The replay probability of a result from a device with reputation `r`, for a task
/// whose `replayRate` is `base`.
pub fn rate(base: f64, r: &Reputation) -> f64 {
    let base = if base.is_nan() {
        0.0
    } else {
        base.clamp(0.0, 1.0)
    };
    let factor = if r.verification_failures > 0 || r.abnormal_timings > 0 {
        8.0
    } else if r.succeeded < 10 {
        4.0
    } else if r.succeeded >= 100 {
        0.25
    } else {
        1.0
    };
    (base * factor).min(1.0)
}

/// A replay to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The fragment.
    pub fragment: u32,
    /// The replay record's attempt number (from [`ATTEMPT_BASE`]).
    pub attempt: u32,
    /// Devices that executed the fragment already: their providers are excluded.
    pub exclude: Vec<String>,
}

/// A result the vote rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loser {
    /// Index of its record.
    pub record: usize,
    /// The fragment.
    pub fragment: u32,
    /// The evidence: the digest the quorum agreed on, and the one received.
    pub detail: String,
}

/// What the votes say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Replays to place now.
    pub requests: Vec<Request>,
    /// Results to reject.
    pub losers: Vec<Loser>,
    /// Fragments drawn for replay whose vote is still open.
    pub open: BTreeSet<u32>,
    /// Fragments whose vote settled on a digest.
    pub settled: BTreeSet<u32>,
}

#[derive(Default)]
struct Ballot {
    /// (digest, record index) of each accepted result.
    votes: Vec<(String, usize)>,
    /// A replay still running, or a result awaiting its challenges.
    pending: bool,
    /// Devices that executed it.
    devices: Vec<String>,
    replays: u32,
    lost_replays: u32,
}

/// Settles the replayed fragments of one task's `records` under `quorum`. A fragment in
/// `unreplayable` (no eligible device of another provider exists) settles on the votes
/// it has instead of asking for another.
pub fn settle(records: &[Assignment], quorum: u32, unreplayable: &BTreeSet<u32>) -> Settlement {
    let mut out = Settlement::default();
    if quorum <= 1 {
        return out;
    }
    // Only fragments drawn for replay have a vote; a rejected original still asked for
    // its replay, so the vote settles on. Most tasks have none: nothing else is built.
    let wanted: BTreeSet<u32> = records
        .iter()
        .filter(|a| !a.replay)
        .flat_map(|a| &a.results)
        .filter(|r| r.replay_wanted_ms.is_some())
        .map(|r| r.fragment)
        .collect();
    if wanted.is_empty() {
        return out;
    }
    let mut ballots: BTreeMap<u32, Ballot> = BTreeMap::new();
    for (i, a) in records.iter().enumerate() {
        if a.replay && wanted.contains(&a.start) {
            let b = ballots.entry(a.start).or_default();
            b.replays += 1;
            b.devices.push(a.device.clone());
            match a.state {
                State::Pending | State::Running => b.pending = true,
                State::Lost if a.results.is_empty() => b.lost_replays += 1,
                _ => {}
            }
        }
        for r in a.results.iter().filter(|r| wanted.contains(&r.fragment)) {
            let b = ballots.entry(r.fragment).or_default();
            if !a.replay {
                b.devices.push(a.device.clone());
            }
            if is_rejected(r) {
                continue;
            }
            if is_paid(r) {
                b.votes.push((super::quality::vote(r), i));
            } else if matches!(r.check, Some(Check::Challenged { .. })) {
                b.pending = true;
            }
        }
    }
    for (f, b) in ballots {
        let mut tally: BTreeMap<&str, u32> = BTreeMap::new();
        for (d, _) in &b.votes {
            *tally.entry(d).or_default() += 1;
        }
        let mut ranked: Vec<(&str, u32)> = tally.into_iter().collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
        let top = ranked.first().copied();
        let plurality = match ranked.as_slice() {
            [(d, n), (_, m), ..] if n > m => Some(*d),
            [(d, _)] => Some(*d),
            _ => None,
        };
        let votes = b.votes.len() as u32;
        let winner = match top {
            Some((d, n)) if n >= quorum => Some(Some(d)),
            _ if b.pending => None,
            _ if votes >= quorum + TIEBREAKS
                || b.lost_replays >= MAX_LOST
                || unreplayable.contains(&f) =>
            {
                Some(plurality)
            }
            _ => {
                let mut exclude = b.devices.clone();
                exclude.sort();
                exclude.dedup();
                out.requests.push(Request {
                    fragment: f,
                    attempt: ATTEMPT_BASE + b.replays,
                    exclude,
                });
                None
            }
        };
        let Some(winner) = winner else {
            out.open.insert(f);
            continue;
        };
        for (d, i) in &b.votes {
            if Some(d.as_str()) != winner {
                out.losers.push(Loser {
                    record: *i,
                    fragment: f,
                    detail: match winner {
                        Some(w) => format!(
                            "expected digest {w} ({} of {votes} devices agreed), received {d}",
                            b.votes.iter().filter(|(x, _)| x == w).count()
                        ),
                        None => format!(
                            "expected {quorum} devices to agree, received {votes} votes with no majority; this one was {d}"
                        ),
                    },
                });
            }
        }
        if winner.is_some() {
            out.settled.insert(f);
        }
    }
    out
}

#[cfg(test)]
mod tests;
