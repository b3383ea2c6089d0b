//! Scheduling metrics: the cycle-duration histogram, fragments by state over active
//! tasks, and the queue depth (pending fragments) per namespace. Gauges are recomputed
//! from the last observation of each task, so a deleted task stops counting.

use crate::api::task_status::FragmentCounts;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

/// The task controller's metrics.
#[derive(Debug, Clone)]
pub struct TaskMetrics {
    cycles: Histogram,
    fragments: Family<StateLabels, Gauge>,
    queue: Family<NamespaceLabels, Gauge>,
    invalid: Family<ReasonLabels, prometheus_client::metrics::counter::Counter>,
    observed: Arc<Mutex<Observed>>,
}

/// The last counts of each active task, by UID, and every namespace seen: a namespace's
/// queue series stays, at 0 when nothing waits, so a dashboard shows an empty queue
/// rather than no data.
#[derive(Debug, Default)]
struct Observed {
    tasks: HashMap<String, (String, FragmentCounts)>,
    namespaces: std::collections::BTreeSet<String>,
}

impl TaskMetrics {
    /// Registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            cycles: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            fragments: Family::default(),
            queue: Family::default(),
            invalid: Family::default(),
            observed: Arc::default(),
        };
        registry.register(
            "invalid_records",
            "Assignment records ignored because they failed validation, by reason",
            m.invalid.clone(),
        );
        registry.register(
            "scheduling_cycle_duration_seconds",
            "Duration of a scheduling cycle (snapshot, nominate, place)",
            m.cycles.clone(),
        );
        registry.register(
            "fragments",
            "Fragments of active tasks by state",
            m.fragments.clone(),
        );
        registry.register(
            "queue_depth",
            "Fragments waiting for a device, per namespace",
            m.queue.clone(),
        );
        m
    }

    /// Counts an assignment record ignored for `reason`.
    pub fn invalid_record(&self, reason: &'static str) {
        self.invalid.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records one cycle's duration.
    pub fn cycle(&self, d: Duration) {
        self.cycles.observe(d.as_secs_f64());
    }

    /// Records a task's counts; a terminal task stops counting.
    pub fn observe_task(&self, namespace: &str, uid: &str, c: &FragmentCounts, terminal: bool) {
        let mut o = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        if terminal {
            o.tasks.remove(uid);
        } else {
            o.namespaces.insert(namespace.to_string());
            o.tasks
                .insert(uid.to_string(), (namespace.to_string(), c.clone()));
        }
        self.publish(&o);
    }

    /// Forgets a deleted task.
    pub fn forget_task(&self, uid: &str) {
        let mut o = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        o.tasks.remove(uid);
        self.publish(&o);
    }

    fn publish(&self, o: &Observed) {
        let mut by_state = [0i64; 5];
        let mut queue: BTreeMap<&str, i64> = BTreeMap::new();
        for (ns, c) in o.tasks.values() {
            for (slot, v) in
                by_state
                    .iter_mut()
                    .zip([c.pending, c.running, c.completed, c.verified, c.failed])
            {
                *slot += i64::from(v);
            }
            *queue.entry(ns).or_default() += i64::from(c.pending);
        }
        for (state, v) in ["pending", "running", "completed", "verified", "failed"]
            .into_iter()
            .zip(by_state)
        {
            self.fragments.get_or_create(&StateLabels { state }).set(v);
        }
        for ns in &o.namespaces {
            self.queue
                .get_or_create(&NamespaceLabels {
                    namespace: ns.clone(),
                })
                .set(queue.get(ns.as_str()).copied().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_whose_tasks_ended_shows_an_empty_queue_not_no_data() {
        let mut registry = Registry::default();
        let m = TaskMetrics::new(&mut registry);
        let waiting = FragmentCounts {
            pending: 3,
            ..Default::default()
        };
        m.observe_task("team", "u1", &waiting, false);
        let text = crate::metrics::render(&registry);
        assert!(text.contains("queue_depth{namespace=\"team\"} 3"), "{text}");
        m.observe_task("team", "u1", &waiting, true);
        let text = crate::metrics::render(&registry);
        assert!(text.contains("queue_depth{namespace=\"team\"} 0"), "{text}");
    }
}
