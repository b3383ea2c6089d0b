use super::*;
use crate::api::protocol::Check;
use crate::api::task::ModelSpec;
use crate::scheduler::fixtures::TaskBuilder;
use crate::tasks::assignment::State;

/// Softmax regression on 16 features and 4 classes at `rate`.
fn linear(rate: f64) -> ComputeTaskSpec {
    let mut spec = TaskBuilder::training(1_000, 1).spec();
    let t = spec.training.as_mut().unwrap();
    t.model = ModelSpec {
        architecture: Architecture::SoftmaxRegression,
        features: 16,
        classes: 4,
        hidden: None,
    };
    t.learning_rate = rate;
    spec
}

fn q(losses: &[f64], correct: u64) -> ResultQuality {
    ResultQuality {
        losses: losses.to_vec(),
        correct,
    }
}

#[test]
fn descent_is_guaranteed_only_at_small_rates() {
    assert!((descent_rate(16) - 4.0 / 145.0).abs() < 1e-15);
    let slow = linear(0.01);
    assert_eq!(check(&slow, 100, Some(&q(&[1.38, 1.20], 40))), Ok(()));
    let err = check(&slow, 100, Some(&q(&[1.2, 1.38], 40))).unwrap_err();
    assert_eq!(err.reason(), "LossRose");
    assert!(err.to_string().contains("received 1.38"), "{err}");
    // Within rounding and the tolerance: no rise is held against the worker.
    let tiny = 1.2 + allowed_rise(16, 4, slow.verification.tolerance, 1.2) * 0.9;
    assert_eq!(check(&slow, 100, Some(&q(&[1.2, tiny], 40))), Ok(()));
    // A large rate may honestly overshoot; so may the perceptron at any rate.
    assert_eq!(check(&linear(0.5), 100, Some(&q(&[1.2, 1.38], 40))), Ok(()));
    let mut mlp = TaskBuilder::training(1_000, 1).spec();
    mlp.training.as_mut().unwrap().learning_rate = 1e-4;
    assert_eq!(check(&mlp, 100, Some(&q(&[1.2, 1.38], 40))), Ok(()));
}

#[test]
fn malformed_qualities_are_rejected_with_the_evidence() {
    let spec = linear(0.5);
    let cases = [
        (None, "BadQuality", "received none"),
        (Some(q(&[1.0], 3)), "BadQuality", "expected 2 losses"),
        (
            Some(q(&[1.0, 0.5, 0.4], 3)),
            "BadQuality",
            "expected 2 losses",
        ),
        (Some(q(&[1.0, f64::NAN], 3)), "BadQuality", "loss 1"),
        (Some(q(&[-0.1, 0.5], 3)), "BadQuality", "loss 0"),
        (Some(q(&[f64::INFINITY, 0.5], 3)), "BadQuality", "loss 0"),
        (Some(q(&[1.0, 0.5], 101)), "BadQuality", "at most 100"),
    ];
    for (quality, reason, evidence) in cases {
        let err = check(&spec, 100, quality.as_ref()).unwrap_err();
        assert_eq!(err.reason(), reason);
        assert!(err.to_string().contains(evidence), "{err}");
    }
    // Inference carries a count and no losses; other kinds carry nothing.
    let inference = TaskBuilder::inference(500).spec();
    assert_eq!(check(&inference, 50, Some(&q(&[], 50))), Ok(()));
    assert!(check(&inference, 50, Some(&q(&[0.3, 0.2], 5))).is_err());
    let proof = TaskBuilder::proof(64, 4).spec();
    assert_eq!(check(&proof, 1, None), Ok(()));
    assert_eq!(
        check(&proof, 1, Some(&q(&[], 0))),
        Err(QualityFailure::Unexpected)
    );
}

fn record(
    device: &str,
    results: Vec<(u32, &str, Option<ResultQuality>, Option<Check>)>,
) -> Assignment {
    Assignment {
        task_namespace: "ns".into(),
        task: "t".into(),
        task_uid: "u".into(),
        device: device.into(),
        start: 0,
        end: 4,
        attempt: 0,
        state: State::Completed,
        results: results
            .into_iter()
            .map(|(fragment, d, quality, check)| FragmentResult {
                fragment,
                digest: d.repeat(64),
                work_units: 1,
                elapsed_ms: 1,
                received_ms: 1,
                check,
                replay_wanted_ms: None,
                quality,
                payable_ms: None,
            })
            .collect(),
        created_ms: 0,
        updated_ms: 0,
        pod_uid: None,
        claim_mismatches: 0,
        replay: false,
    }
}

#[test]
fn the_summary_weighs_counted_results_by_their_samples_once_per_fragment() {
    let rejected = Some(Check::Rejected {
        reason: "LossRose".into(),
        detail: String::new(),
        at_ms: 1,
    });
    let records = [
        record(
            "a",
            vec![
                (0, "a", Some(q(&[2.0, 1.0], 10)), None),
                (1, "b", Some(q(&[2.0, 3.0], 30)), None),
            ],
        ),
        // A replay of fragment 0 counts once; a rejected result not at all.
        record(
            "b",
            vec![
                (0, "a", Some(q(&[2.0, 1.0], 10)), None),
                (2, "c", Some(q(&[9.0, 9.0], 0)), rejected),
            ],
        ),
    ];
    let items = |f: u32| [10u64, 30, 50][f as usize];
    let (loss, accuracy) = summary(&records, items);
    assert_eq!(accuracy, Some(40.0 / 40.0));
    assert_eq!(loss, Some((1.0 * 10.0 + 3.0 * 30.0) / 40.0));
    // A claimed count above the fragment's samples is capped, not trusted.
    let over = [record("a", vec![(0, "a", Some(q(&[], 99)), None)])];
    assert_eq!(summary(&over, items), (None, Some(1.0)));
    assert_eq!(summary(&[], items), (None, None));
}

#[test]
fn a_vote_is_the_digest_and_for_a_model_its_exact_quality() {
    let r = |quality| FragmentResult {
        fragment: 0,
        digest: "ab".repeat(32),
        work_units: 1,
        elapsed_ms: 1,
        received_ms: 0,
        check: None,
        replay_wanted_ms: None,
        quality,
        payable_ms: None,
    };
    assert_eq!(vote(&r(None)), "ab".repeat(32));
    let honest = vote(&r(Some(q(&[1.5, 1.25], 7))));
    assert_eq!(honest, vote(&r(Some(q(&[1.5, 1.25], 7)))));
    assert_ne!(honest, vote(&r(Some(q(&[1.5, 1.2], 7)))));
    assert_ne!(honest, vote(&r(Some(q(&[1.5, 1.25], 8)))));
}

#[test]
fn honest_training_at_the_descent_rate_never_fails_the_check() {
    use zop_kernels::fragment::{FragmentKind, execute_range};
    use zop_kernels::training::TrainingParams;
    for (features, classes, seed) in [(1u32, 2u32, 1u64), (16, 4, 2), (64, 10, 3), (300, 7, 4)] {
        let mut spec = linear(descent_rate(features));
        let t = spec.training.as_mut().unwrap();
        (t.model.features, t.model.classes) = (features, classes);
        let kind = FragmentKind::Training {
            params: TrainingParams {
                features,
                classes,
                samples: 400,
                learning_rate: t.learning_rate as f32,
                local_steps: TRAINING_LOCAL_STEPS,
                seed,
                hidden: None,
            },
            epochs: 1,
        };
        let out = execute_range(&kind, 100..300).unwrap().quality.unwrap();
        let reported = q(&out.losses, out.correct);
        assert_eq!(check(&spec, 200, Some(&reported)), Ok(()), "F={features}");
        assert!(
            out.losses[1] < out.losses[0],
            "F={features}: {:?}",
            out.losses
        );
    }
}
