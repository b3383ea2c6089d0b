use super::*;

fn data(features: usize, classes: usize, samples: u64) -> DataSet {
    DataSet::new(features, classes, samples, 42).unwrap()
}

/// The mean loss in f64 with the platform's `exp`/`ln`, as an independent reference.
fn loss_f64(w: &[f64], b: &[f64], shard: &Shard) -> f64 {
    let (f, c) = (shard.features(), shard.classes());
    let mut total = 0.0;
    for i in 0..shard.len() {
        let (x, y) = shard.sample(i).unwrap();
        let z: Vec<f64> = (0..c)
            .map(|k| {
                let dot: f64 = (0..f).map(|j| w[k * f + j] * f64::from(x[j])).sum();
                dot + b[k]
            })
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        total += s.ln() + m - z[y as usize];
    }
    total / shard.len() as f64
}

#[test]
fn the_gradient_matches_central_finite_differences() {
    let d = data(5, 3, 30);
    let shard = d.shard(3..33).unwrap();
    let model = Model::initial(&d, 7);
    let e = evaluate(&model, &shard).unwrap();
    let w: Vec<f64> = model.weights().iter().map(|v| f64::from(*v)).collect();
    let b: Vec<f64> = model.bias().iter().map(|v| f64::from(*v)).collect();
    assert!((e.loss - loss_f64(&w, &b, &shard)).abs() < 1e-5);
    let h = 1e-4;
    let analytic = e.gradient.weights.iter().chain(&e.gradient.bias);
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (i, g) in analytic.enumerate() {
        let (mut wp, mut wm, mut bp, mut bm) = (w.clone(), w.clone(), b.clone(), b.clone());
        if i < w.len() {
            wp[i] += h;
            wm[i] -= h;
        } else {
            bp[i - w.len()] += h;
            bm[i - w.len()] -= h;
        }
        let fd = (loss_f64(&wp, &bp, &shard) - loss_f64(&wm, &bm, &shard)) / (2.0 * h);
        let g = f64::from(*g);
        assert!(
            (g - fd).abs() <= 1e-3 * fd.abs() + 1e-5,
            "entry {i}: {g} vs {fd}"
        );
        err += (g - fd).powi(2);
        norm += fd.powi(2);
    }
    assert!(
        (err / norm).sqrt() < 1e-3,
        "relative error {}",
        (err / norm).sqrt()
    );
}

#[test]
fn loss_decreases_at_every_step_and_the_data_is_learnable() {
    let d = data(8, 4, 200);
    let shard = d.shard(0..200).unwrap();
    let mut model = Model::initial(&d, 1);
    let mut last = f64::INFINITY;
    for _ in 0..30 {
        let e = step(&mut model, &shard, 0.5).unwrap();
        assert!(e.loss < last, "{} after {last}", e.loss);
        last = e.loss;
    }
    let end = evaluate(&model, &shard).unwrap();
    assert!(end.loss < 0.6 * evaluate(&Model::initial(&d, 1), &shard).unwrap().loss);
    assert!(end.accuracy() > 0.8, "accuracy {}", end.accuracy());
    // The model generalizes to items it never saw.
    let held_out = evaluate(&model, &d.shard(1000..1200).unwrap()).unwrap();
    assert!(
        held_out.accuracy() > 0.75,
        "held-out {}",
        held_out.accuracy()
    );
}

#[test]
fn the_same_seed_commits_to_the_same_digest_and_another_does_not() {
    let run = |seed| {
        let d = DataSet::new(6, 3, 50, seed).unwrap();
        let shard = d.shard(10..40).unwrap();
        let mut model = Model::initial(&d, seed);
        let mut c = GradientCommitment::new(6, 3);
        for _ in 0..3 {
            c.push(&step(&mut model, &shard, 0.1).unwrap().gradient);
        }
        c.finish()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn the_commitment_hashes_the_documented_bytes() {
    let g = Gradient {
        weights: vec![0.5, -1.0],
        bias: vec![2.0f32.powi(-21)],
    };
    assert_eq!(g.quantized(), vec![1 << 19, -(1 << 20), 1]);
    let mut bytes = b"zop/training/v1".to_vec();
    for v in [2u32, 1] {
        bytes.extend(v.to_le_bytes());
    }
    for q in [1i32 << 19, -(1 << 20), 1] {
        bytes.extend(q.to_le_bytes());
    }
    assert_eq!(g.digest(2, 1), <Hash>::from(Sha256::digest(&bytes)));
}

#[test]
fn quantization_rounds_half_away_and_saturates() {
    let ulp = 1.0 / GRADIENT_SCALE;
    assert_eq!(quantize(0.5 * ulp), 1);
    assert_eq!(quantize(-0.5 * ulp), -1);
    assert_eq!(quantize(0.49 * ulp), 0);
    assert_eq!(quantize(1e9), i32::MAX);
    assert_eq!(quantize(f32::NEG_INFINITY), i32::MIN);
    assert_eq!(quantize(f32::NAN), 0);
}

#[test]
fn a_shuffled_summation_stays_within_the_documented_tolerance() {
    // Another summation order is what a GPU reduction does; emulate it on the CPU.
    let d = data(6, 5, 400);
    let shard = d.shard(0..400).unwrap();
    let model = Model::initial(&d, 3);
    let e = evaluate(&model, &shard).unwrap();
    let (f, c) = (6, 5);
    let mut reversed = vec![0.0f32; f * c];
    let (mut z, mut p) = (vec![0.0; c], vec![0.0; c]);
    for i in (0..shard.len()).rev() {
        let (x, y) = shard.sample(i).unwrap();
        model.logits_into(x, &mut z);
        model::softmax(&z, y, &mut p);
        for k in 0..c {
            let dk = p[k] - if k == y as usize { 1.0 } else { 0.0 };
            for j in 0..f {
                reversed[k * f + j] += dk * x[j];
            }
        }
    }
    let tol = tolerance(shard.len(), c, shard.max_abs_feature());
    for (a, b) in e.gradient.weights.iter().zip(&reversed) {
        let b = b / shard.len() as f32;
        assert!(f64::from((a - b).abs()) <= tol, "{a} vs {b}, tol {tol}");
    }
}

#[test]
fn bad_parameters_are_errors_not_panics() {
    let d = data(4, 3, 10);
    let shard = d.shard(0..10).unwrap();
    let mut model = Model::initial(&d, 0);
    for lr in [0.0, -1.0, 10.5, f32::NAN, f32::INFINITY] {
        assert_eq!(
            step(&mut model, &shard, lr).unwrap_err().field(),
            "learningRate",
            "{lr}"
        );
    }
    let other = Model::zeros(5, 3).unwrap();
    assert!(matches!(
        evaluate(&other, &shard),
        Err(TrainingError::ShapeMismatch { .. })
    ));
    assert_eq!(
        model,
        Model::initial(&d, 0),
        "a refused step changes nothing"
    );
}
