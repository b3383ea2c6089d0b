use super::*;
use crate::scheduler::cycle::RetryPolicy;
use crate::tasks::assignment::FragmentResult;
use crate::tasks::plan::plan;
use proptest::prelude::*;

const UID: &str = "6f1c2a4b-77aa-4f00-9d2e-0123456789ab";

fn slicing() -> Slicing {
    Slicing::even(4_000_000_000, 40, 1_000)
}

fn task(s: &Slicing) -> TaskRef<'_> {
    TaskRef {
        namespace: "team-a",
        name: "proof",
        uid: UID,
        slicing: s,
    }
}

fn record(start: u32, end: u32, state: State) -> Assignment {
    Assignment {
        task_namespace: "team-a".into(),
        task: "proof".into(),
        task_uid: UID.into(),
        device: "gpu-1".into(),
        start,
        end,
        attempt: 0,
        state,
        results: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        pod_uid: None,
        claim_mismatches: 0,
        replay: false,
    }
}

fn result(s: &Slicing, fragment: u32) -> FragmentResult {
    FragmentResult {
        fragment,
        digest: "ab".repeat(32),
        work_units: s.weight(fragment),
        elapsed_ms: 1,
        received_ms: 0,
        check: None,
        replay_wanted_ms: None,
        quality: None,
        payable_ms: None,
    }
}

fn check(a: &Assignment) -> Result<(), Invalid> {
    let s = slicing();
    let name = record::name(&a.task_uid, a.start, a.attempt);
    validate(a, &name, &task(&s), |d| d == "gpu-1")
}

#[test]
fn a_record_the_operator_writes_is_valid() {
    let s = slicing();
    let mut a = record(4, 8, State::Running);
    a.results = vec![result(&s, 4), result(&s, 6)];
    assert_eq!(check(&a), Ok(()));
    a.results = (4..8).map(|f| result(&s, f)).collect();
    a.state = State::Completed;
    assert_eq!(check(&a), Ok(()));
}

#[test]
fn a_reversed_or_outside_range_is_refused() {
    // The forged record that once panicked the planner: "start":5,"end":2.
    assert!(matches!(
        check(&record(5, 2, State::Pending)),
        Err(Invalid::BadRange { .. })
    ));
    assert!(matches!(
        check(&record(38, 41, State::Pending)),
        Err(Invalid::BadRange { .. })
    ));
}

#[test]
fn a_forged_completion_is_refused() {
    let s = slicing();
    // Completed with no results, or with results outside its range.
    assert!(matches!(
        check(&record(0, 2, State::Completed)),
        Err(Invalid::BadState { .. })
    ));
    let mut a = record(0, 2, State::Completed);
    a.results = vec![result(&s, 0), result(&s, 5)];
    assert_eq!(check(&a), Err(Invalid::BadResult(5)));
    // Repeated results cannot pad a completion.
    a.results = vec![result(&s, 0), result(&s, 0)];
    assert_eq!(check(&a), Err(Invalid::BadResult(0)));
}

#[test]
fn inflated_work_units_are_refused() {
    let s = slicing();
    let mut a = record(0, 2, State::Running);
    let mut r = result(&s, 1);
    r.work_units = u64::MAX;
    a.results = vec![r];
    assert!(matches!(check(&a), Err(Invalid::WrongWork { .. })));
}

#[test]
fn a_record_of_another_task_or_name_is_refused() {
    let mut a = record(0, 2, State::Pending);
    a.task_namespace = "team-b".into();
    assert_eq!(check(&a), Err(Invalid::WrongTask));
    let s = slicing();
    let a = record(0, 2, State::Pending);
    assert!(matches!(
        validate(&a, "zop-other-0-0", &task(&s), |_| true),
        Err(Invalid::WrongName { .. })
    ));
}

#[test]
fn a_live_record_on_an_unknown_device_is_refused_a_finished_one_kept() {
    let s = slicing();
    let mut a = record(0, 1, State::Pending);
    a.device = "nowhere".into();
    assert_eq!(check(&a), Err(Invalid::UnknownDevice("nowhere".into())));
    // A device deleted after its work was done keeps its history.
    a.results = vec![result(&s, 0)];
    a.state = State::Completed;
    assert_eq!(check(&a), Ok(()));
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Pending),
        Just(State::Running),
        Just(State::Completed),
        Just(State::Lost)
    ]
}

fn any_record() -> impl Strategy<Value = Assignment> {
    (
        0u32..60,
        0u32..60,
        0u32..4,
        any_state(),
        proptest::collection::vec((0u32..60, any::<bool>(), any::<bool>()), 0..8),
        prop_oneof![Just("gpu-1".to_string()), Just("ghost".to_string())],
    )
        .prop_map(|(start, end, attempt, state, results, device)| {
            let s = slicing();
            let mut a = record(start, end, state);
            a.attempt = attempt;
            a.device = device;
            a.results = results
                .into_iter()
                .map(|(fragment, good_digest, honest)| {
                    let mut r = result(&s, fragment.min(40));
                    r.fragment = fragment;
                    if !good_digest {
                        r.digest = "XY".into();
                    }
                    if !honest {
                        r.work_units = u64::MAX;
                    }
                    r
                })
                .collect();
            a
        })
}

/// A valid record built from arbitrary pieces: a range inside the task and results
/// the slicer would accept, in a state that agrees with them.
fn valid_record() -> impl Strategy<Value = Assignment> {
    (0u32..40, 1u32..8, 0u32..4, any::<u64>()).prop_map(|(start, len, attempt, mask)| {
        let s = slicing();
        let end = (start + len).min(40);
        let mut a = record(start, end, State::Running);
        a.attempt = attempt;
        a.results = (start..end)
            .filter(|f| mask >> (f % 64) & 1 == 1)
            .map(|f| result(&s, f))
            .collect();
        a.state = match a.results.len() {
            0 => State::Pending,
            n if n == a.len() as usize => State::Completed,
            _ => State::Running,
        };
        a
    })
}

const POLICY: RetryPolicy = RetryPolicy {
    base: std::time::Duration::from_secs(5),
    max_delay: std::time::Duration::from_secs(300),
    limit: 3,
};

proptest! {
    #[test]
    fn the_planner_never_panics_and_never_drops_a_valid_record(
        junk in proptest::collection::vec(any_record(), 0..12),
        valid in proptest::collection::vec(valid_record(), 0..12),
        batch in 0u32..10,
    ) {
        let s = slicing();
        // Anything, unvalidated: the planner stays total.
        let mut all = junk.clone();
        all.extend(valid.iter().cloned());
        let _ = plan(&s, &all, batch, &POLICY);
        // What validation keeps: every valid record, and only records it accepts.
        let kept: Vec<Assignment> = all.into_iter().filter(|a| check(a).is_ok()).collect();
        for v in &valid {
            prop_assert!(check(v).is_ok(), "valid record refused: {v:?}");
            prop_assert!(kept.contains(v));
        }
        let p = plan(&s, &kept, batch, &POLICY);
        let done: std::collections::BTreeSet<u32> =
            kept.iter().flat_map(|a| a.results.iter().map(|r| r.fragment)).collect();
        prop_assert_eq!(p.counts.completed as usize, done.len());
        for u in &p.waiting {
            prop_assert!(u.fragments.clone().all(|f| !done.contains(&f)));
        }
        prop_assert_eq!(
            p.counts.completed + p.counts.running + p.counts.pending + p.counts.failed,
            s.fragments()
        );
    }
}
