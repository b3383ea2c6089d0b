//! What the gateway checks about a report besides its record: that the reporting device
//! is in good standing, what a report on someone else's assignment costs, how long the
//! result took against the device's benchmark, and whether it is drawn for replay.

use super::GatewayState;
use super::auth::Principal;
use super::protocol::ApiError;
use super::work::TaskFacts;
use crate::api::DevicePhase;
use crate::devices::reputation::Outcome;
use crate::tasks::assignment::Assignment;
use crate::verifier::Evidence;
use crate::verify::timing::{self, Timing};
use kube::runtime::reflector::ObjectRef;

type Result<T> = std::result::Result<T, ApiError>;

/// Refuses a device that verification took out of work (Quarantined or Retired): it
/// gets no assignment and reports no more results; its answers to challenges already
/// drawn are still taken.
pub(super) fn in_good_standing(state: &GatewayState, device: &str) -> Result<()> {
    let phase = state
        .devices
        .get(&ObjectRef::new(device))
        .and_then(|d| d.status.as_ref().map(|s| s.phase));
    match phase {
        Some(p @ (DevicePhase::Quarantined | DevicePhase::Retired)) => {
            state.verifier.refused("DeviceOutOfWork");
            Err(ApiError::forbidden(
                "DeviceOutOfWork",
                format!("device {device} is {p:?} and takes no work"),
            ))
        }
        _ => Ok(()),
    }
}

/// The caller's own device, for an agent, must be in good standing.
pub(super) fn caller_in_good_standing(state: &GatewayState, who: &Principal) -> Result<()> {
    match who {
        Principal::Device(d) => in_good_standing(state, d),
        Principal::WorkerPod { .. } => Ok(()),
    }
}

/// A report on an assignment that is not the caller's: refused, counted, and for an
/// agent's device (which only ever learns its own assignments' names) a failed
/// verification with the evidence.
pub(super) async fn foreign(state: &GatewayState, who: &Principal, name: &str, a: &Assignment) {
    state.verifier.refused("ForeignCredentials");
    tracing::warn!(assignment = name, caller = ?who, "a report under another device's or pod's credentials");
    if let Principal::Device(d) = who {
        let evidence = Evidence {
            task: format!("{}/{}", a.task_namespace, a.task),
            fragment: a.start,
            reason: "ForeignAssignment".into(),
            detail: format!(
                "expected reports from device {}, received one on assignment {name} from device {d}",
                a.device
            ),
        };
        state
            .verifier
            .outcome(d, Outcome::Rejected, &evidence)
            .await;
    }
}

/// Whether an accepted result of `device` is drawn for replay: the task's `replayRate`,
/// adapted to the device's record, against the operating system's CSPRNG.
pub(super) fn draw_replay(state: &GatewayState, facts: &TaskFacts, device: &str) -> Result<bool> {
    let reputation = state
        .devices
        .get(&ObjectRef::new(device))
        .and_then(|d| d.status.as_ref().map(|s| s.reputation.clone()))
        .unwrap_or_default();
    let rate = crate::verify::replay::rate(facts.spec.verification.replay_rate, &reputation);
    if rate <= 0.0 || facts.spec.verification.quorum <= 1 {
        return Ok(false);
    }
    let u = (super::secrets::random_u64()? >> 11) as f64 / (1u64 << 53) as f64;
    Ok(u < rate)
}

/// The device's provider, or `(unknown)` for a device the cache does not hold.
pub(super) fn provider_of(state: &GatewayState, device: &str) -> String {
    state
        .devices
        .get(&ObjectRef::new(device))
        .map_or_else(|| "(unknown)".into(), |d| d.spec.provider.clone())
}

/// The device's benchmark score (GOP/s), 0 when it has none.
pub(super) fn device_score(state: &GatewayState, device: &str) -> u64 {
    state
        .devices
        .get(&ObjectRef::new(device))
        .and_then(|d| d.status.as_ref()?.benchmark.as_ref().map(|b| b.score))
        .unwrap_or(0)
}

/// The evidence of an abnormal report-back time.
pub(super) fn timing_evidence(a: &Assignment, fragment: u32, t: Timing) -> Evidence {
    let (reason, measured, expected, bound) = match t {
        Timing::TooFast {
            measured_ms,
            expected_ms,
        } => (
            "TooFast",
            measured_ms,
            expected_ms,
            format!("at least {} ms", expected_ms / timing::FAST_FACTOR),
        ),
        Timing::TooSlow {
            measured_ms,
            expected_ms,
        } => (
            "TooSlow",
            measured_ms,
            expected_ms,
            format!(
                "at most {} ms",
                expected_ms * timing::SLOW_FACTOR + timing::SLOW_SLACK_MS
            ),
        ),
        Timing::Plausible => ("Plausible", 0, 0, String::new()),
    };
    Evidence {
        task: format!("{}/{}", a.task_namespace, a.task),
        fragment,
        reason: reason.into(),
        detail: format!(
            "expected {bound} (the benchmark's time is {expected} ms), received the result after {measured} ms"
        ),
    }
}
