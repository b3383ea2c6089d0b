//! Validation of assignment records read back from the API server. A record is trusted
//! only when it is one the operator could have written for this task: its name matches
//! its task, fragments and attempt; its range lies inside the task; its device is known
//! (while it is live); its state agrees with its results; every result is in range,
//! sorted, unique, a well-formed digest, and worth exactly the slicer's cost. Anything
//! else is ignored by the caller (with a warning Event and a metric), never used, so a
//! corrupt or forged record can neither panic the planner nor credit a device. Pure.

use super::assignment::{Assignment, State};
use super::record;
use crate::scheduler::slicer::Slicing;

/// Why a record is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// It belongs to another task (UID, namespace or name).
    #[error("it names another task")]
    WrongTask,
    /// Its object name is not the one its task, first fragment and attempt give.
    #[error("its name is not the assignment's name {expected}")]
    WrongName {
        /// The name it should have.
        expected: String,
    },
    /// `start..end` is empty or reaches past the task's fragments.
    #[error("fragments {start}..{end} are not a range inside the task's {total} fragments")]
    BadRange {
        /// First fragment.
        start: u32,
        /// End fragment (exclusive).
        end: u32,
        /// The task's fragment count.
        total: u32,
    },
    /// A live assignment names a device that does not exist.
    #[error("device {0:?} is unknown")]
    UnknownDevice(String),
    /// A result outside the range, out of order, repeated, or malformed.
    #[error("result for fragment {0} is out of range, repeated or malformed")]
    BadResult(u32),
    /// A result's work units differ from the slicer's cost of its fragment.
    #[error("fragment {fragment} is recorded as {recorded} work units, the slicer says {expected}")]
    WrongWork {
        /// The fragment.
        fragment: u32,
        /// What the record says.
        recorded: u64,
        /// What the slicer computes.
        expected: u64,
    },
    /// The state contradicts the results (for example Completed with fragments missing).
    #[error("state {state:?} with {results} of {len} results")]
    BadState {
        /// The state.
        state: State,
        /// Results recorded.
        results: usize,
        /// Fragments in the assignment.
        len: u32,
    },
}

impl Invalid {
    /// A short fixed category, for metric labels and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::WrongTask => "WrongTask",
            Self::WrongName { .. } => "WrongName",
            Self::BadRange { .. } => "BadRange",
            Self::UnknownDevice(_) => "UnknownDevice",
            Self::BadResult(_) => "BadResult",
            Self::WrongWork { .. } => "WrongWork",
            Self::BadState { .. } => "BadState",
        }
    }
}

/// The task a record must belong to.
#[derive(Debug, Clone, Copy)]
pub struct TaskRef<'a> {
    /// The task's namespace.
    pub namespace: &'a str,
    /// The task's name.
    pub name: &'a str,
    /// The task's UID.
    pub uid: &'a str,
    /// How the task is sliced.
    pub slicing: &'a Slicing,
}

/// Checks record `a`, stored under object name `name`, against `task`; `device_known`
/// says whether a Device exists.
pub fn validate(
    a: &Assignment,
    name: &str,
    task: &TaskRef<'_>,
    device_known: impl Fn(&str) -> bool,
) -> Result<(), Invalid> {
    if a.task_uid != task.uid || a.task_namespace != task.namespace || a.task != task.name {
        return Err(Invalid::WrongTask);
    }
    let expected = record::name(&a.task_uid, a.start, a.attempt);
    if name != expected {
        return Err(Invalid::WrongName { expected });
    }
    let total = task.slicing.fragments();
    if a.start >= a.end || a.end > total {
        return Err(Invalid::BadRange {
            start: a.start,
            end: a.end,
            total,
        });
    }
    let live = matches!(a.state, State::Pending | State::Running);
    if live && !device_known(&a.device) {
        return Err(Invalid::UnknownDevice(a.device.clone()));
    }
    let mut previous: Option<u32> = None;
    for r in &a.results {
        let ordered = previous.is_none_or(|p| p < r.fragment);
        if !ordered || !(a.start..a.end).contains(&r.fragment) || !is_digest(&r.digest) {
            return Err(Invalid::BadResult(r.fragment));
        }
        let expected = task.slicing.weight(r.fragment);
        if r.work_units != expected {
            return Err(Invalid::WrongWork {
                fragment: r.fragment,
                recorded: r.work_units,
                expected,
            });
        }
        previous = Some(r.fragment);
    }
    let complete = a.results.len() == a.len() as usize;
    let consistent = match a.state {
        State::Pending => a.results.is_empty(),
        State::Running => !complete,
        State::Completed => complete,
        State::Lost => true,
    };
    if !consistent {
        return Err(Invalid::BadState {
            state: a.state,
            results: a.results.len(),
            len: a.len(),
        });
    }
    Ok(())
}

/// 64 lowercase hex characters.
pub fn is_digest(d: &str) -> bool {
    d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests;
