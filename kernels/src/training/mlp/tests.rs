use super::*;
use crate::training::{self, GradientCommitment};

fn data(features: usize, classes: usize, samples: u64) -> DataSet {
    DataSet::new(features, classes, samples, 42).unwrap()
}

/// Every parameter, in the commitment's order: `V`, `c`, `W`, `b`.
fn flat(m: &Mlp) -> Vec<f64> {
    let o = m.output();
    [m.hidden_weights(), m.hidden_bias(), o.weights(), o.bias()]
        .concat()
        .iter()
        .map(|v| f64::from(*v))
        .collect()
}

/// The mean loss and every sample's active units, in f64 with the platform's `exp`/`ln`:
/// an independent reference for the parameters `p` (the order of [`flat`]).
fn loss_f64(p: &[f64], f: usize, h: usize, c: usize, shard: &Shard) -> (f64, Vec<bool>) {
    let (v, rest) = p.split_at(h * f);
    let (cb, rest) = rest.split_at(h);
    let (w, b) = rest.split_at(c * h);
    let (mut total, mut active) = (0.0, Vec::new());
    for i in 0..shard.len() {
        let (x, y) = shard.sample(i).unwrap();
        let hid: Vec<f64> = (0..h)
            .map(|j| {
                let a: f64 = (0..f).map(|k| v[j * f + k] * f64::from(x[k])).sum::<f64>() + cb[j];
                active.push(a > 0.0);
                a.max(0.0)
            })
            .collect();
        let z: Vec<f64> = (0..c)
            .map(|k| (0..h).map(|j| w[k * h + j] * hid[j]).sum::<f64>() + b[k])
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        total += s.ln() + m - z[y as usize];
    }
    (total / shard.len() as f64, active)
}

fn analytic(e: &MlpEvaluation) -> Vec<f32> {
    let g = &e.gradient;
    [
        &g.hidden.weights[..],
        &g.hidden.bias,
        &g.output.weights,
        &g.output.bias,
    ]
    .concat()
}

#[test]
fn the_gradient_matches_central_finite_differences() {
    let (f, h, c) = (5, 6, 3);
    let d = data(f, c, 40);
    let shard = d.shard(3..43).unwrap();
    let m = Mlp::initial(&d, h, 7).unwrap();
    let e = evaluate(&m, &shard).unwrap();
    let p = flat(&m);
    let (reference, _) = loss_f64(&p, f, h, c, &shard);
    assert!(
        (e.loss - reference).abs() < 1e-5,
        "{} vs {reference}",
        e.loss
    );
    let step = 1e-5;
    let (mut checked, mut skipped, mut worst) = (0, 0, 0.0f64);
    for (i, g) in analytic(&e).iter().enumerate() {
        let (mut up, mut down) = (p.clone(), p.clone());
        up[i] += step;
        down[i] -= step;
        let (lu, au) = loss_f64(&up, f, h, c, &shard);
        let (ld, ad) = loss_f64(&down, f, h, c, &shard);
        if au != ad {
            // The perturbation crosses a kink of the rectifier: no derivative there.
            skipped += 1;
            continue;
        }
        let fd = (lu - ld) / (2.0 * step);
        let err = (f64::from(*g) - fd).abs();
        worst = worst.max(err / (1e-3 + fd.abs()));
        assert!(
            err <= 1e-4 + 1e-3 * fd.abs(),
            "entry {i}: analytic {g}, finite difference {fd}"
        );
        checked += 1;
    }
    assert_eq!(checked + skipped, h * f + h + c * h + c);
    assert!(
        skipped * 10 <= checked,
        "{skipped} kinks, {checked} checked"
    );
    eprintln!(
        "mlp gradient: {checked} entries within {worst:.2e} (relative) of finite differences"
    );
}

#[test]
fn another_summation_order_stays_within_the_documented_bound() {
    let (f, h, c) = (12, 16, 4);
    let d = data(f, c, 500);
    let shard = d.shard(0..500).unwrap();
    let mut reversed = shard.clone();
    let rows: Vec<&[f32]> = shard.x.chunks_exact(f).rev().collect();
    reversed.x = rows.concat();
    reversed.y.reverse();
    let m = Mlp::initial(&d, h, 3).unwrap();
    let (a, b) = (
        evaluate(&m, &shard).unwrap(),
        evaluate(&m, &reversed).unwrap(),
    );
    let max_x = shard.x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let max_v = m
        .hidden_weights()
        .iter()
        .fold(0.0f32, |a, v| a.max(v.abs()));
    let bound = tolerance(shard.len(), f, h, c, max_x, max_v);
    let diffs = analytic(&a).into_iter().zip(analytic(&b));
    let worst = diffs.fold(0.0f64, |w, (x, y)| w.max(f64::from((x - y).abs())));
    assert!(
        worst > 0.0,
        "the two orders should round differently somewhere"
    );
    assert!(
        worst <= bound,
        "difference {worst:e} above the bound {bound:e}"
    );
    eprintln!("mlp gradient: two summation orders differ by {worst:e}, bound {bound:e}");
    assert_eq!(a.correct, b.correct);
}

#[test]
fn gradient_descent_lowers_the_loss_and_learns() {
    let d = data(8, 4, 400);
    let shard = d.shard(0..400).unwrap();
    let mut m = Mlp::initial(&d, 32, 5).unwrap();
    let first = evaluate(&m, &shard).unwrap();
    let mut last = first.loss;
    for _ in 0..30 {
        let e = evaluate(&m, &shard).unwrap();
        assert!(
            e.loss <= last + 1e-6,
            "the loss rose: {} after {last}",
            e.loss
        );
        last = e.loss;
        m.descend(&e.gradient, 0.5);
    }
    let end = evaluate(&m, &shard).unwrap();
    assert!(end.loss < 0.7 * first.loss, "{} → {}", first.loss, end.loss);
    assert!(end.correct as f64 / end.samples as f64 > 0.8);
}

#[test]
fn the_reference_perceptron_reproduces_the_linear_reference_exactly() {
    let (f, c) = (9, 5);
    let d = data(f, c, 100);
    let shard = d.shard(0..100).unwrap();
    let linear = Model::reference(&d);
    let mlp = Mlp::reference(&d, 2 * c + 1).unwrap();
    let (mut zl, mut zm, mut hid) = (vec![0.0; c], vec![0.0; c], vec![0.0; 2 * c + 1]);
    for i in 0..shard.len() {
        let (x, _) = shard.sample(i).unwrap();
        linear.logits_into(x, &mut zl);
        mlp.logits_into(x, &mut hid, &mut zm);
        assert_eq!(zl, zm, "sample {i}");
    }
    // Too narrow for every class: those it has no units for are never predicted.
    let narrow = Mlp::reference(&d, 4).unwrap();
    for i in 0..shard.len() {
        let (x, _) = shard.sample(i).unwrap();
        narrow.logits_into(x, &mut hid[..4], &mut zm);
        assert!(zm[2..].iter().all(|z| *z == -1.0e4));
    }
}

#[test]
fn the_commitment_covers_both_layers_in_order() {
    let d = data(3, 2, 10);
    let shard = d.shard(0..10).unwrap();
    let m = Mlp::initial(&d, 4, 1).unwrap();
    let g = evaluate(&m, &shard).unwrap().gradient;
    let digest = |g: &MlpGradient| {
        let mut c = GradientCommitment::new_mlp(3, 4, 2);
        c.push_mlp(g);
        c.finish()
    };
    let mut swapped = g.clone();
    swapped.output.bias.reverse();
    assert_ne!(digest(&g), digest(&swapped));
    let linear = training::evaluate(&Model::initial(&d, 1), &shard).unwrap();
    assert_ne!(
        digest(&g),
        linear.gradient.digest(3, 2),
        "an mlp commitment never equals a linear one"
    );
}

#[test]
fn bad_shapes_are_errors_naming_the_field() {
    let d = data(3, 2, 10);
    assert_eq!(Mlp::initial(&d, 0, 1).unwrap_err().field(), "hidden");
    assert_eq!(Mlp::initial(&d, 4097, 1).unwrap_err().field(), "hidden");
    let out = Model::zeros(4, 2).unwrap();
    let e = Mlp::from_parts(3, vec![0.0; 11], vec![0.0; 4], out.clone()).unwrap_err();
    assert_eq!(e.field(), "hiddenWeights");
    let e = Mlp::from_parts(3, vec![0.0; 12], vec![0.0; 3], out).unwrap_err();
    assert_eq!(e.field(), "hiddenBias");
    let m = Mlp::initial(&d, 4, 1).unwrap();
    let other = data(4, 2, 10).shard(0..10).unwrap();
    assert_eq!(evaluate(&m, &other).unwrap_err().field(), "model");
}
