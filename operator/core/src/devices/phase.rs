//! Device phase transitions: what phase the facts put a device in, and when to look
//! again. Pure; times are Unix seconds.

use super::reputation::Standing;
use crate::api::DevicePhase;

/// Where a device comes from, as far as liveness is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A cluster Node: `present` in the API, `ready` per its Ready condition, and
    /// `onboarded` while it carries the onboarding label.
    Node {
        /// The Node object exists.
        present: bool,
        /// Its Ready condition is True.
        ready: bool,
        /// It still carries `zoptoken.io/onboard=true`.
        onboarded: bool,
    },
    /// A Group-Key agent and its last heartbeat, if any.
    Agent {
        /// Unix seconds of the last heartbeat.
        last_heartbeat: Option<i64>,
        /// The agent's Group Key was revoked or the device was retired by an admin.
        retired: bool,
    },
}

/// Everything the phase depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Liveness evidence.
    pub liveness: Liveness,
    /// `Some(false)` when the last benchmark or fingerprint was implausible.
    pub plausible: Option<bool>,
    /// Where verification outcomes put the device (`devices::reputation`).
    pub standing: Standing,
    /// Now, Unix seconds.
    pub now: i64,
    /// Seconds without a heartbeat before an agent is Offline.
    pub grace: i64,
}

/// The phase the facts imply, and the number of seconds after which it would change by
/// time alone (an agent's grace running out).
pub fn next_phase(f: &Facts) -> (DevicePhase, Option<i64>) {
    match f.liveness {
        Liveness::Node {
            onboarded: false, ..
        }
        | Liveness::Agent { retired: true, .. } => {
            return (DevicePhase::Retired, None);
        }
        _ if f.standing == Standing::Retired => return (DevicePhase::Retired, None),
        _ if f.plausible == Some(false) || f.standing == Standing::Quarantined => {
            return (DevicePhase::Quarantined, None);
        }
        _ => {}
    }
    match f.liveness {
        Liveness::Node {
            present: true,
            ready: true,
            ..
        } => (DevicePhase::Online, None),
        Liveness::Node { .. } => (DevicePhase::Offline, None),
        Liveness::Agent {
            last_heartbeat: None,
            ..
        } => (DevicePhase::Pending, None),
        Liveness::Agent {
            last_heartbeat: Some(hb),
            ..
        } => {
            let deadline = hb.saturating_add(f.grace);
            if f.now < deadline {
                (DevicePhase::Online, Some(deadline - f.now))
            } else {
                (DevicePhase::Offline, None)
            }
        }
    }
}

/// Whether a device in `phase` may take new fragments.
pub fn available(phase: DevicePhase, cordoned: bool) -> bool {
    phase == DevicePhase::Online && !cordoned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(present: bool, ready: bool, onboarded: bool) -> Facts {
        Facts {
            liveness: Liveness::Node {
                present,
                ready,
                onboarded,
            },
            plausible: None,
            standing: Standing::Good,
            now: 1000,
            grace: 30,
        }
    }

    fn agent(hb: Option<i64>) -> Facts {
        Facts {
            liveness: Liveness::Agent {
                last_heartbeat: hb,
                retired: false,
            },
            plausible: None,
            standing: Standing::Good,
            now: 1000,
            grace: 30,
        }
    }

    #[test]
    fn a_ready_labelled_node_is_online() {
        assert_eq!(next_phase(&node(true, true, true)).0, DevicePhase::Online);
    }

    #[test]
    fn a_gone_or_not_ready_node_is_offline() {
        assert_eq!(
            next_phase(&node(false, false, true)).0,
            DevicePhase::Offline
        );
        assert_eq!(next_phase(&node(true, false, true)).0, DevicePhase::Offline);
    }

    #[test]
    fn removing_the_label_retires_even_an_offline_node() {
        assert_eq!(
            next_phase(&node(false, false, false)).0,
            DevicePhase::Retired
        );
        assert_eq!(next_phase(&node(true, true, false)).0, DevicePhase::Retired);
    }

    #[test]
    fn an_agent_is_pending_until_its_first_heartbeat() {
        assert_eq!(next_phase(&agent(None)), (DevicePhase::Pending, None));
    }

    #[test]
    fn an_agent_is_online_within_grace_and_says_when_to_look_again() {
        assert_eq!(
            next_phase(&agent(Some(990))),
            (DevicePhase::Online, Some(20))
        );
    }

    #[test]
    fn an_agent_past_grace_is_offline_and_online_again_on_a_new_heartbeat() {
        assert_eq!(next_phase(&agent(Some(970))).0, DevicePhase::Offline);
        assert_eq!(next_phase(&agent(Some(999))).0, DevicePhase::Online);
    }

    #[test]
    fn implausible_hardware_quarantines_but_retirement_wins() {
        let mut f = node(true, true, true);
        f.plausible = Some(false);
        assert_eq!(next_phase(&f).0, DevicePhase::Quarantined);
        f.liveness = Liveness::Node {
            present: true,
            ready: true,
            onboarded: false,
        };
        assert_eq!(next_phase(&f).0, DevicePhase::Retired);
    }

    #[test]
    fn only_online_uncordoned_devices_are_available() {
        assert!(available(DevicePhase::Online, false));
        assert!(!available(DevicePhase::Online, true));
        assert!(!available(DevicePhase::Offline, false));
    }
}
