use super::*;
use crate::tasks::assignment::FragmentResult;

fn record(device: &str, start: u32, end: u32, replay: bool) -> Assignment {
    Assignment {
        task_namespace: "ns".into(),
        task: "t".into(),
        task_uid: "u".into(),
        device: device.into(),
        start,
        end,
        attempt: if replay { ATTEMPT_BASE } else { 0 },
        state: State::Running,
        results: Vec::new(),
        created_ms: 0,
        updated_ms: 0,
        pod_uid: None,
        claim_mismatches: 0,
        replay,
    }
}

fn with(mut a: Assignment, fragment: u32, digest: char, wanted: bool) -> Assignment {
    a.results.push(FragmentResult {
        fragment,
        digest: digest.to_string().repeat(64),
        work_units: 1,
        elapsed_ms: 1,
        received_ms: 1,
        check: Some(Check::Verified { at_ms: 1 }),
        replay_wanted_ms: wanted.then_some(1),
        quality: None,
        payable_ms: None,
    });
    a.results.sort_by_key(|r| r.fragment);
    a.state = if a.results.len() as u32 == a.len() {
        State::Completed
    } else {
        State::Running
    };
    a
}

fn none() -> BTreeSet<u32> {
    BTreeSet::new()
}

#[test]
fn without_another_provider_the_original_stands() {
    let original = with(record("alice-1", 0, 1, false), 0, 'a', true);
    let s = settle(&[original], 2, &BTreeSet::from([0]));
    assert!(s.requests.is_empty() && s.losers.is_empty() && s.settled.contains(&0));
}

#[test]
fn the_rate_adapts_to_the_record() {
    let mut r = Reputation::default();
    assert_eq!(rate(0.05, &r), 0.2, "new devices are replayed 4x as often");
    r.succeeded = 50;
    assert_eq!(rate(0.05, &r), 0.05);
    r.succeeded = 500;
    assert_eq!(rate(0.05, &r), 0.0125, "a long clean record 4x less");
    r.abnormal_timings = 1;
    assert_eq!(rate(0.05, &r), 0.4, "suspicious devices 8x as often");
    assert_eq!(rate(0.5, &r), 1.0);
    assert_eq!(rate(f64::NAN, &r), 0.0);
}

#[test]
fn a_drawn_fragment_gets_one_replay_away_from_its_devices() {
    let original = with(record("alice-1", 0, 2, false), 1, 'a', true);
    let s = settle(&[original], 2, &none());
    assert_eq!(
        s.requests,
        [Request {
            fragment: 1,
            attempt: ATTEMPT_BASE,
            exclude: vec!["alice-1".into()]
        }]
    );
    assert!(s.open.contains(&1) && s.losers.is_empty());
}

#[test]
fn agreement_settles_and_a_running_replay_waits() {
    let original = with(record("alice-1", 0, 1, false), 0, 'a', true);
    let running = record("bob-1", 0, 1, true);
    let s = settle(&[original.clone(), running], 2, &none());
    assert!(s.requests.is_empty() && s.open.contains(&0));
    let agreed = with(record("bob-1", 0, 1, true), 0, 'a', false);
    let s = settle(&[original, agreed], 2, &none());
    assert!(s.settled.contains(&0) && s.losers.is_empty() && s.requests.is_empty());
}

#[test]
fn a_disagreement_goes_to_a_third_device_and_the_minority_loses() {
    let original = with(record("mallory-1", 0, 1, false), 0, 'x', true);
    let replay = with(record("bob-1", 0, 1, true), 0, 'a', false);
    let s = settle(&[original.clone(), replay.clone()], 2, &none());
    assert_eq!(s.requests.len(), 1);
    assert_eq!(s.requests[0].attempt, ATTEMPT_BASE + 1);
    assert_eq!(s.requests[0].exclude, ["bob-1", "mallory-1"]);
    let mut third = with(record("carol-1", 0, 1, true), 0, 'a', false);
    third.attempt = ATTEMPT_BASE + 1;
    let s = settle(&[original, replay, third], 2, &none());
    assert_eq!(s.losers.len(), 1);
    assert_eq!(s.losers[0].record, 0, "the original was the minority");
    assert!(s.losers[0].detail.contains("expected digest aaaa"));
    assert!(s.settled.contains(&0));
}

#[test]
fn after_the_minority_is_rejected_the_vote_stays_settled() {
    let mut original = with(record("mallory-1", 0, 1, false), 0, 'x', true);
    assert!(original.overrule(0, "ReplayMismatch", String::new(), 2));
    assert!(!original.overrule(0, "ReplayMismatch", String::new(), 3));
    // A rejected original is no vote, but its draw still holds the fragment to a quorum.
    let replay = with(record("bob-1", 0, 1, true), 0, 'a', false);
    let third = with(record("carol-1", 0, 1, true), 0, 'a', false);
    let s = settle(&[original, replay, third], 2, &none());
    assert!(s.settled.contains(&0) && s.losers.is_empty() && s.requests.is_empty());
}

#[test]
fn a_tie_past_the_tiebreaks_rejects_every_vote_and_quorum_one_replays_nothing() {
    let votes: Vec<Assignment> = ['a', 'b', 'c', 'd']
        .iter()
        .enumerate()
        .map(|(i, d)| with(record(&format!("p{i}"), 0, 1, i > 0), 0, *d, i == 0))
        .collect();
    let s = settle(&votes, 2, &none());
    assert_eq!(s.losers.len(), 4);
    assert!(!s.settled.contains(&0));
    let original = with(record("alice-1", 0, 1, false), 0, 'a', true);
    assert_eq!(settle(&[original], 1, &none()), Settlement::default());
}

#[test]
fn lost_replays_are_retried_a_few_times_then_the_original_stands() {
    let original = with(record("alice-1", 0, 1, false), 0, 'a', true);
    let mut records = vec![original];
    for k in 0..MAX_LOST {
        let mut lost = record(&format!("bob-{k}"), 0, 1, true);
        lost.attempt = ATTEMPT_BASE + k;
        lost.state = State::Lost;
        records.push(lost);
        let s = settle(&records, 2, &none());
        if k + 1 < MAX_LOST {
            assert_eq!(s.requests[0].attempt, ATTEMPT_BASE + k + 1);
        } else {
            assert!(s.requests.is_empty() && s.settled.contains(&0));
        }
    }
}
