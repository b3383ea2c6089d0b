//! Benchmark of compute-proof verification (a benchmark, not a timed test), on this
//! machine's CPU:
//!
//! 1. **Verifier cost**: for `n` = 1024, 4096 and 8192, the fragment's own compute (its
//!    products on the CPU path), the operator's check of 66 challenged rows (Freivalds
//!    and Merkle proofs), and the worker's answers (66 rows recomputed), each as a
//!    fraction of the fragment, all on one core; and the same fractions by operation
//!    count.
//! 2. **Detection**: the formula against a seeded simulation, per fragment (f = 10%,
//!    k = 66) and across a 100-fragment task (f = 1%, at the default k = 66 and at the
//!    fewest challenges that reach 99.9%).
//! 3. **Overhead of a task** next to plain 2× replication (BOINC's fixed quorum of 2).
//! 4. **Spot checks** of data-processing chunks and inference samples: the fragment, the
//!    worker's proofs and the operator's recomputation of the drawn leaves.
//!
//! Run with `cargo bench -p zop-core --bench verify` (`-- --quick` skips n = 8192).

use std::time::Instant;
use zop_core::verify::{
    answer_ops, challenges_for, detection, fragment_ops, simulate, simulate_tasks, task_detection,
    verifier_ops,
};
use zop_kernels::compute_proof::challenge::{Commitment, Fragment, check, draw_rows};
use zop_kernels::compute_proof::{self, cpu};
use zop_kernels::data::Operation;
use zop_kernels::fragment::{Committed, FragmentKind, executor::Executor};
use zop_kernels::spot::{self, Leaves};

const K: u32 = 66;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!("verification benchmark, one CPU core for every figure");
    println!("\n1. verifier cost per compute-proof fragment ({K} challenged rows)");
    println!(
        "{:>6} {:>8} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "n",
        "products",
        "fragment s",
        "verify ms",
        "answer ms",
        "verify %",
        "answer %",
        "ops v %",
        "ops a %"
    );
    let sizes: &[(u32, u32)] = if quick {
        &[(1024, 2), (4096, 1)]
    } else {
        &[(1024, 2), (4096, 1), (8192, 1)]
    };
    let mut measured = Vec::new();
    for &(n, products) in sizes {
        let f = Fragment {
            seed: 7,
            n,
            first: 0,
            count: products,
        };
        let nn = n as usize;
        let started = Instant::now();
        let trees = (0..products)
            .map(|p| {
                let (a, b) = compute_proof::inputs(f.product_seed(p), nn).expect("shape");
                let c = cpu::matmul(&a, &b, nn).expect("shape");
                compute_proof::commit(&c, nn).expect("shape")
            })
            .collect();
        let fragment_s = started.elapsed().as_secs_f64();
        let commitment = Commitment::new(f, trees);
        let rows = draw_rows(0x5eed, &f, K);
        let started = Instant::now();
        let answers = commitment.answer(&rows).expect("rows in range");
        let answer_s = started.elapsed().as_secs_f64();
        // The verifier's time, on one thread as the gateway spends it: best of three.
        let verify_s = (0..3)
            .map(|i| {
                let started = Instant::now();
                let verdict = check(&f, &commitment.root(), &rows, &answers, 99 + i);
                assert_eq!(verdict, Ok(()), "an honest fragment must verify");
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        measured.push((verify_s + answer_s) / fragment_s);
        let distinct = u64::from(products.min(K));
        let ops = fragment_ops(u64::from(n), u64::from(products)) as f64;
        println!(
            "{:>6} {:>8} {:>12.2} {:>12.1} {:>12.1} {:>9.3}% {:>9.2}% {:>9.3}% {:>9.2}%",
            n,
            products,
            fragment_s,
            verify_s * 1e3,
            answer_s * 1e3,
            100.0 * verify_s / fragment_s,
            100.0 * answer_s / fragment_s,
            100.0 * verifier_ops(u64::from(n), u64::from(rows.len() as u32), distinct) as f64 / ops,
            100.0 * answer_ops(u64::from(n), rows.len() as u64) as f64 / ops,
        );
    }

    println!("\n2. detection probability (formula | seeded simulation)");
    let trials = 200_000;
    let per_fragment = detection(0.10, K);
    let simulated = simulate(1, trials, 1024 * 2, 0.10, K);
    println!(
        "   per fragment, f = 10%, k = {K}: {:.5} | {:.5} over {trials} fragments",
        per_fragment, simulated
    );
    // The fewest challenges per fragment for 99.9% across 100 fragments: each fragment
    // must catch with 1 − 0.001^(1/100).
    let k_task = challenges_for(1.0 - 0.001f64.powf(1.0 / 100.0), 0.01).unwrap_or(K);
    for k in [k_task, K] {
        let tasks = 20_000;
        println!(
            "   100-fragment task, f = 1%, k = {k}: {:.6} | {:.6} over {tasks} tasks",
            task_detection(0.01, k, 100),
            simulate_tasks(1, tasks, 100, 2048, 0.01, k)
        );
    }

    println!("\n3. verification overhead of a task, as extra compute over the task's own");
    println!(
        "   (challenges on every fragment, worker and verifier together, by operations and by"
    );
    println!("   the CPU time measured above; replication re-executes every fragment once more)");
    for (&(n, products), time) in sizes.iter().zip(&measured) {
        let ops = fragment_ops(u64::from(n), u64::from(products)) as f64;
        let ours = (answer_ops(u64::from(n), u64::from(K))
            + verifier_ops(u64::from(n), u64::from(K), u64::from(products.min(K))))
            as f64
            / ops;
        println!(
            "   n = {n:>5}, {products} products a fragment: challenges {:.2}% of operations, {:.2}% of CPU time | 2x replication 100% ({:.0}x to {:.0}x less)",
            100.0 * ours,
            100.0 * time,
            1.0 / time.max(ours),
            1.0 / time.min(ours)
        );
    }

    spot_checks(quick);
}

/// Section 4: each kind's fragment on one core, its proofs and the verifier's check.
fn spot_checks(quick: bool) {
    println!(
        "\n4. spot checks ({}% of a fragment's leaves, at most {K})",
        100.0 * zop_core::verify::challenge::SPOT_SHARE
    );
    println!(
        "{:>34} {:>7} {:>5} {:>12} {:>10} {:>10} {:>9}",
        "fragment", "leaves", "k", "fragment s", "proofs ms", "verify ms", "verify %"
    );
    let mib = if quick { 16 } else { 64 };
    let cases = [
        (
            format!("sha256, {mib} MiB in 64 KiB chunks"),
            FragmentKind::DataProcessing {
                operation: Operation::Sha256,
                bytes: mib << 20,
                chunk_size: 65_536,
                seed: 3,
            },
            0..(mib << 20),
        ),
        (
            "inference, linear 256 x 10, 20,000".to_string(),
            FragmentKind::Inference {
                features: 256,
                classes: 10,
                samples: 20_000,
                seed: 3,
                hidden: None,
            },
            0..20_000,
        ),
        (
            "inference, mlp 256-512-10, 20,000".to_string(),
            FragmentKind::Inference {
                features: 256,
                classes: 10,
                samples: 20_000,
                seed: 3,
                hidden: Some(512),
            },
            0..20_000,
        ),
    ];
    let ex = Executor::cpu();
    for (name, kind, range) in cases {
        let started = Instant::now();
        let run = ex.execute(&kind, range.clone()).expect("runs");
        let fragment_s = started.elapsed().as_secs_f64();
        let Some(Committed::Leaves(tree)) = run.commitment else {
            panic!("{name}: no leaves kept");
        };
        let leaves = match kind {
            FragmentKind::DataProcessing {
                operation,
                chunk_size,
                seed,
                ..
            } => Leaves::Chunks {
                operation,
                seed,
                chunk_size,
                range,
            },
            FragmentKind::Inference {
                features,
                classes,
                samples,
                seed,
                hidden,
            } => Leaves::Samples {
                data: (features, classes, samples, seed),
                hidden,
                range,
            },
            _ => unreachable!("only spot-checked kinds are listed"),
        };
        let share = (leaves.count() as f64 * zop_core::verify::challenge::SPOT_SHARE).ceil() as u64;
        let k = share.clamp(1, u64::from(K)) as u32;
        let drawn = spot::draw(0x5eed, leaves.count(), k);
        let started = Instant::now();
        let proofs = spot::answer(&tree, &drawn).expect("drawn leaves exist");
        let proofs_s = started.elapsed().as_secs_f64();
        let verify_s = (0..3)
            .map(|_| {
                let started = Instant::now();
                let verdict = spot::check(&leaves, &tree.root(), &drawn, &proofs);
                assert_eq!(verdict, Ok(()), "an honest fragment must verify");
                started.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "{:>34} {:>7} {:>5} {:>12.3} {:>10.3} {:>10.2} {:>8.2}%",
            name,
            leaves.count(),
            drawn.len(),
            fragment_s,
            proofs_s * 1e3,
            verify_s * 1e3,
            100.0 * verify_s / fragment_s
        );
    }
}
