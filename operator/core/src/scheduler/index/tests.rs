use super::*;

fn live(task: &str, device: &str, unfinished: u32) -> Option<Live> {
    Some(Live {
        task_uid: task.into(),
        device: device.into(),
        unfinished,
    })
}

#[test]
fn live_records_load_their_device_and_finished_ones_do_not() {
    let mut ix = AssignmentIndex::default();
    ix.apply_record("a", "t1", Source::Pod, live("t1", "gpu-1", 3));
    ix.apply_record("b", "t1", Source::ConfigMap, live("t1", "gpu-1", 2));
    assert_eq!(
        ix.load("gpu-1"),
        DeviceLoad {
            fragments: 5,
            assignments: 2
        }
    );
    // A result arrives: the ConfigMap supersedes the Pod's annotation.
    ix.apply_record("a", "t1", Source::ConfigMap, live("t1", "gpu-1", 1));
    ix.apply_record("a", "t1", Source::Pod, live("t1", "gpu-1", 3));
    assert_eq!(ix.load("gpu-1").fragments, 3);
    // Finished: no load, still the task's record.
    ix.apply_record("a", "t1", Source::ConfigMap, None);
    ix.apply_record("b", "t1", Source::ConfigMap, None);
    assert_eq!(ix.load("gpu-1"), DeviceLoad::default());
    assert_eq!(ix.records_of("t1"), ["a", "b"]);
    assert_eq!(ix.live_count(), 0);
    // The Pod going does not remove a record its ConfigMap holds.
    ix.remove_record("a", "t1", Source::Pod);
    assert!(ix.has_record("a"));
    ix.remove_record("a", "t1", Source::ConfigMap);
    ix.remove_record("b", "t1", Source::ConfigMap);
    assert!(ix.records_of("t1").is_empty());
}

#[test]
fn a_pod_holds_its_node_until_it_ends() {
    let mut ix = AssignmentIndex::default();
    ix.apply_pod("p1", Some("node-a"));
    ix.apply_pod("p2", Some("node-a"));
    ix.apply_pod("p1", Some("node-a"));
    assert_eq!(ix.pods_on("node-a"), 2);
    ix.apply_pod("p1", None);
    assert_eq!(ix.pods_on("node-a"), 1);
    ix.apply_pod("p2", None);
    ix.apply_pod("gone", None);
    assert_eq!(ix.pods_on("node-a"), 0);
}

fn assumed(task: &str, device: &str, frags: Range<u32>, at_ms: i64) -> Assumed {
    Assumed {
        task_uid: task.into(),
        device: device.into(),
        fragments: frags,
        at_ms,
    }
}

#[test]
fn assumptions_cover_their_ranges_until_confirmed_failed_or_expired() {
    let mut ax = Assumptions::default();
    ax.assume("t1-0", assumed("t1", "gpu-1", 0..4, 1_000));
    ax.assume("t1-8", assumed("t1", "gpu-2", 8..10, 1_000));
    assert!(ax.covers("t1", &(3..5)));
    assert!(ax.covers("t1", &(9..12)));
    assert!(!ax.covers("t1", &(4..8)));
    assert!(!ax.covers("t2", &(0..4)));
    assert_eq!(ax.load()["gpu-1"].fragments, 4);
    // The write of one failed: forgotten.
    ax.drop_one("t1-8");
    assert!(!ax.covers("t1", &(9..12)));
    // The index shows the other: confirmed.
    let mut ix = AssignmentIndex::default();
    ix.apply_record("t1-0", "t1", Source::Pod, live("t1", "gpu-1", 4));
    ax.assume("t1-4", assumed("t1", "gpu-1", 4..8, 1_000));
    ax.settle(&ix, 2_000, 30_000);
    assert_eq!(ax.len(), 1);
    // Never shown: expires.
    ax.settle(&ix, 40_000, 30_000);
    assert!(ax.is_empty());
}

#[test]
fn a_relist_replaces_what_a_source_said() {
    let mut ix = AssignmentIndex::default();
    ix.apply_record("a", "t1", Source::Pod, live("t1", "gpu-1", 2));
    ix.apply_pod("a", Some("node-1"));
    ix.apply_record("b", "t1", Source::ConfigMap, live("t1", "gpu-2", 1));
    ix.reset(Source::Pod);
    assert_eq!(ix.load("gpu-1"), DeviceLoad::default());
    assert_eq!(ix.pods_on("node-1"), 0);
    assert_eq!(
        ix.load("gpu-2").assignments,
        1,
        "the other source is untouched"
    );
    assert_eq!(ix.records_of("t1"), ["b"]);
}

#[test]
fn a_units_record_is_found_by_its_first_fragment_and_attempt() {
    let mut ix = AssignmentIndex::default();
    let name = crate::tasks::record::name("6f1c2a4b-77aa", 40, 2);
    ix.apply_record(&name, "6f1c2a4b-77aa", Source::Pod, None);
    assert!(ix.has_unit("6f1c2a4b-77aa", 40, 2));
    assert!(!ix.has_unit("6f1c2a4b-77aa", 40, 3));
    ix.remove_record(&name, "6f1c2a4b-77aa", Source::Pod);
    assert!(!ix.has_unit("6f1c2a4b-77aa", 40, 2));
}
