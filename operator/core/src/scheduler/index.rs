//! The scheduler loop's own view of what is placed: the assignment index and the
//! assumptions. Both are plain data fed one watch event (or one write) at a time, so a
//! cycle reads each device's load without listing or parsing a record, and neither a
//! finished record nor an idle task costs a cycle anything.
//!
//! - The index holds the live assignments (pending or running: the load they put on
//!   their device) and the unfinished worker Pods per node (each holds a GPU until it
//!   ends, even past its assignment), and the names of every record per task (live or
//!   not), so a task's reconcile reads its own records by name.
//! - An assumption is a placement the loop wrote (or is writing) and the index has not
//!   shown yet. It counts as load until the index confirms it, its write fails, or it
//!   expires; its task's units that it covers are not placed again meanwhile.
//!
//! Pure; times are Unix milliseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;

/// A live assignment as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its task's UID.
    pub task_uid: String,
    /// Its device.
    pub device: String,
    /// Fragments still to run.
    pub unfinished: u32,
}

/// Where a record was read from: a ConfigMap supersedes its Pod's annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The assignment's ConfigMap.
    ConfigMap,
    /// The worker Pod's annotation (before the ConfigMap exists).
    Pod,
}

/// Load one device carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceLoad {
    /// Fragments still to run on it.
    pub fragments: u32,
    /// Live assignments on it.
    pub assignments: u32,
}

/// The assignment index; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct AssignmentIndex {
    live: HashMap<String, (Source, Live)>,
    /// Record names (with their task) each source holds.
    configmaps: HashMap<String, String>,
    annotations: HashMap<String, String>,
    by_task: HashMap<String, BTreeSet<String>>,
    /// Each task's records as (first fragment, attempt), read from their names, so a
    /// cycle asks "is this unit placed?" without formatting a name.
    units: HashMap<String, HashSet<(u32, u32)>>,
    per_device: HashMap<String, DeviceLoad>,
    pods: HashMap<String, String>,
    per_node: HashMap<String, u32>,
}

impl AssignmentIndex {
    /// Records that record `name` of task `task_uid` exists in `source`, live as `live`
    /// (`None` once it is finished or lost).
    pub fn apply_record(&mut self, name: &str, task_uid: &str, source: Source, live: Option<Live>) {
        self.by_task
            .entry(task_uid.to_string())
            .or_default()
            .insert(name.to_string());
        if let Some(unit) = unit_of(name) {
            self.units
                .entry(task_uid.to_string())
                .or_default()
                .insert(unit);
        }
        if source == Source::ConfigMap {
            self.configmaps
                .insert(name.to_string(), task_uid.to_string());
        } else {
            self.annotations
                .insert(name.to_string(), task_uid.to_string());
            if self.configmaps.contains_key(name) {
                return; // the ConfigMap is the record now
            }
        }
        self.unload(name);
        if let Some(l) = live {
            let load = self.per_device.entry(l.device.clone()).or_default();
            load.fragments = load.fragments.saturating_add(l.unfinished);
            load.assignments = load.assignments.saturating_add(1);
            self.live.insert(name.to_string(), (source, l));
        }
    }

    /// Records that record `name` of task `task_uid` is gone from `source`.
    pub fn remove_record(&mut self, name: &str, task_uid: &str, source: Source) {
        if source == Source::Pod {
            self.annotations.remove(name);
            if self.configmaps.contains_key(name) {
                return;
            }
        } else {
            self.configmaps.remove(name);
            if self.annotations.contains_key(name) {
                // Back to what the Pod's annotation says is unknown here: drop the load
                // until the Pod's next event.
                self.unload(name);
                return;
            }
        }
        self.unload(name);
        if let Some(names) = self.by_task.get_mut(task_uid) {
            names.remove(name);
            if names.is_empty() {
                self.by_task.remove(task_uid);
            }
        }
        if let (Some(unit), Some(units)) = (unit_of(name), self.units.get_mut(task_uid)) {
            units.remove(&unit);
            if units.is_empty() {
                self.units.remove(task_uid);
            }
        }
    }

    fn unload(&mut self, name: &str) {
        if let Some((_, old)) = self.live.remove(name)
            && let Some(load) = self.per_device.get_mut(&old.device)
        {
            load.fragments = load.fragments.saturating_sub(old.unfinished);
            load.assignments = load.assignments.saturating_sub(1);
            if *load == DeviceLoad::default() {
                self.per_device.remove(&old.device);
            }
        }
    }

    /// Records worker Pod `name` on `node`, unfinished (`Some`) or ended or gone (`None`).
    pub fn apply_pod(&mut self, name: &str, node: Option<&str>) {
        if let Some(old) = self.pods.remove(name)
            && let Some(n) = self.per_node.get_mut(&old)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_node.remove(&old);
            }
        }
        if let Some(node) = node {
            *self.per_node.entry(node.to_string()).or_default() += 1;
            self.pods.insert(name.to_string(), node.to_string());
        }
    }

    /// What the live assignments put on `device`.
    pub fn load(&self, device: &str) -> DeviceLoad {
        self.per_device.get(device).copied().unwrap_or_default()
    }

    /// Unfinished worker Pods on `node`.
    pub fn pods_on(&self, node: &str) -> u32 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// Forgets everything `source` said, before a relist of it is applied again.
    pub fn reset(&mut self, source: Source) {
        let names: Vec<(String, String)> = match source {
            Source::ConfigMap => self.configmaps.clone().into_iter().collect(),
            Source::Pod => {
                self.pods.clear();
                self.per_node.clear();
                self.annotations.clone().into_iter().collect()
            }
        };
        for (name, uid) in names {
            self.remove_record(&name, &uid, source);
        }
    }

    /// Whether record `name` is known.
    pub fn has_record(&self, name: &str) -> bool {
        self.live.contains_key(name)
            || self.configmaps.contains_key(name)
            || self.annotations.contains_key(name)
    }

    /// Whether task `task_uid` has a record for the unit starting at fragment `start`,
    /// attempt `attempt` (whose name [`crate::tasks::record::name`] gives).
    pub fn has_unit(&self, task_uid: &str, start: u32, attempt: u32) -> bool {
        self.units
            .get(task_uid)
            .is_some_and(|u| u.contains(&(start, attempt)))
    }

    /// The names of task `task_uid`'s records.
    pub fn records_of(&self, task_uid: &str) -> Vec<String> {
        self.by_task
            .get(task_uid)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Live assignments, in all.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

/// The (first fragment, attempt) a record name `zop-<uid>-<start>-<attempt>` carries.
fn unit_of(name: &str) -> Option<(u32, u32)> {
    let (rest, attempt) = name.rsplit_once('-')?;
    let (_, start) = rest.rsplit_once('-')?;
    Some((start.parse().ok()?, attempt.parse().ok()?))
}

/// A placement written (or being written) and not yet seen in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumed {
    /// Its task's UID.
    pub task_uid: String,
    /// Its device.
    pub device: String,
    /// Its fragments.
    pub fragments: Range<u32>,
    /// When it was made.
    pub at_ms: i64,
}

/// The loop's assumptions, by record name and, for overlap checks, by task.
#[derive(Debug, Default, Clone)]
pub struct Assumptions {
    by_name: BTreeMap<String, Assumed>,
    /// Each task's assumed fragment ranges (`start`, `end`): disjoint, since covered
    /// units are never placed again.
    by_task: HashMap<String, BTreeSet<(u32, u32)>>,
}

impl Assumptions {
    /// Assumes placement `name`.
    pub fn assume(&mut self, name: &str, a: Assumed) {
        self.drop_one(name);
        self.by_task
            .entry(a.task_uid.clone())
            .or_default()
            .insert((a.fragments.start, a.fragments.end));
        self.by_name.insert(name.to_string(), a);
    }

    /// Drops assumption `name`: its record is in the index, or its write failed.
    pub fn drop_one(&mut self, name: &str) -> Option<Assumed> {
        let a = self.by_name.remove(name)?;
        self.unindex(&a);
        Some(a)
    }

    fn unindex(&mut self, a: &Assumed) {
        if let Some(set) = self.by_task.get_mut(&a.task_uid) {
            set.remove(&(a.fragments.start, a.fragments.end));
            if set.is_empty() {
                self.by_task.remove(&a.task_uid);
            }
        }
    }

    /// Drops assumptions the index confirms, and those older than `ttl_ms` (a write the
    /// watch never showed: the cache is trusted again).
    pub fn settle(&mut self, index: &AssignmentIndex, now_ms: i64, ttl_ms: i64) {
        let done: Vec<String> = self
            .by_name
            .iter()
            .filter(|(name, a)| index.has_record(name) || now_ms - a.at_ms > ttl_ms)
            .map(|(name, _)| name.clone())
            .collect();
        for name in done {
            self.drop_one(&name);
        }
    }

    /// Load the assumptions put on each device.
    pub fn load(&self) -> HashMap<&str, DeviceLoad> {
        let mut out: HashMap<&str, DeviceLoad> = HashMap::new();
        for a in self.by_name.values() {
            let l = out.entry(a.device.as_str()).or_default();
            l.fragments = l
                .fragments
                .saturating_add(a.fragments.end.saturating_sub(a.fragments.start));
            l.assignments = l.assignments.saturating_add(1);
        }
        out
    }

    /// Whether fragments `frags` of task `task_uid` overlap an assumption.
    pub fn covers(&self, task_uid: &str, frags: &Range<u32>) -> bool {
        // The ranges are disjoint, so the one starting last before `frags.end` is the
        // only one that can reach into `frags`.
        self.by_task
            .get(task_uid)
            .and_then(|set| set.range(..(frags.end, 0)).next_back())
            .is_some_and(|&(_, end)| end > frags.start)
    }

    /// Assumptions held.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests;
