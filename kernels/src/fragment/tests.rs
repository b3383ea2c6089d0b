use super::*;
use crate::compute_proof::{self, cpu::matmul};
use crate::merkle::MerkleTree;
use crate::training::{self, DataSet, Model};
use crate::{data, inference, seed};
use serde_json::json;

fn proof(dimension: u32, products: u64) -> FragmentKind {
    FragmentKind::ComputeProof {
        dimension,
        products,
        seed: 5,
    }
}

fn training(samples: u64, local_steps: u32) -> FragmentKind {
    FragmentKind::Training {
        params: TrainingParams {
            features: 6,
            classes: 3,
            samples,
            learning_rate: 0.5,
            local_steps,
            seed: 17,
            hidden: None,
        },
        epochs: 1,
    }
}

fn inference(samples: u64) -> FragmentKind {
    FragmentKind::Inference {
        features: 8,
        classes: 4,
        samples,
        seed: 3,
        hidden: None,
    }
}

fn data(operation: Operation) -> FragmentKind {
    FragmentKind::DataProcessing {
        operation,
        bytes: 10_000,
        chunk_size: 1_000,
        seed: 9,
    }
}

#[test]
fn kinds_travel_as_camel_case_json_with_defaults() {
    let k: FragmentKind = serde_json::from_value(json!({
        "training": {"features": 6, "classes": 3, "samples": 40, "learningRate": 0.5}
    }))
    .unwrap();
    assert_eq!(
        k,
        FragmentKind::Training {
            params: TrainingParams {
                features: 6,
                classes: 3,
                samples: 40,
                learning_rate: 0.5,
                local_steps: 1,
                seed: 0,
                hidden: None,
            },
            epochs: 1,
        }
    );
    let d: FragmentKind = serde_json::from_value(json!({
        "dataProcessing": {"operation": "tokenize", "bytes": 5}
    }))
    .unwrap();
    assert!(matches!(
        d,
        FragmentKind::DataProcessing {
            chunk_size: DEFAULT_CHUNK_SIZE,
            operation: Operation::Tokenize,
            ..
        }
    ));
    for kind in [
        proof(64, 3),
        training(40, 2),
        inference(10),
        data(Operation::Sha256),
    ] {
        let v = serde_json::to_value(&kind).unwrap();
        assert!(v.get(kind.name()).is_some(), "{v}");
        assert_eq!(serde_json::from_value::<FragmentKind>(v).unwrap(), kind);
    }
    assert!(serde_json::from_value::<FragmentKind>(json!({"mining": {}})).is_err());
}

#[test]
fn a_one_product_fragment_commits_to_that_products_merkle_root() {
    let kind = proof(16, 3);
    let out = execute_range(&kind, 1..2).unwrap();
    let product_seed = seed::word(seed::stream_key(5, seed::STREAM_PRODUCT), 1);
    let (a, b) = compute_proof::inputs(product_seed, 16).unwrap();
    let root = compute_proof::commit(&matmul(&a, &b, 16).unwrap(), 16)
        .unwrap()
        .root();
    assert_eq!(out.digest, hex(&root));
    assert_eq!(out.work_units, 2 * 16 * 16 * 16);
    assert_eq!(out.metrics["products"], "1");
}

#[test]
fn a_multi_product_fragment_commits_to_the_root_of_product_roots() {
    let whole = execute_range(&proof(8, 3), 0..3).unwrap();
    let roots: Vec<Hash> = (0..3)
        .map(|p| {
            let one = execute_range(&proof(8, 3), p..p + 1).unwrap();
            let mut h = [0u8; 32];
            for (i, b) in h.iter_mut().enumerate() {
                *b = u8::from_str_radix(&one.digest[2 * i..2 * i + 2], 16).unwrap();
            }
            h
        })
        .collect();
    assert_eq!(whole.digest, hex(&MerkleTree::new(roots).root()));
    assert_eq!(whole.work_units, 3 * 2 * 8 * 8 * 8);
}

#[test]
fn a_training_fragment_commits_to_its_shards_gradient() {
    let kind = training(40, 1);
    let out = execute_range(&kind, 20..30).unwrap();
    let d = DataSet::new(6, 3, 40, 17).unwrap();
    let e = training::evaluate(&Model::initial(&d, 17), &d.shard(20..30).unwrap()).unwrap();
    assert_eq!(out.digest, hex(&e.gradient.digest(6, 3)));
    assert_eq!(out.work_units, 6 * (6 * 3 + 3) * 10);
    assert_eq!(out.metrics["initialLoss"], format!("{:.6}", e.loss));
    assert_ne!(out.digest, execute_range(&kind, 30..40).unwrap().digest);
}

#[test]
fn local_steps_lower_the_loss_and_replay_identically() {
    let kind = training(200, 10);
    let out = execute_range(&kind, 0..100).unwrap();
    let loss: f64 = out.metrics["loss"].parse().unwrap();
    let initial: f64 = out.metrics["initialLoss"].parse().unwrap();
    assert!(loss < initial, "{loss} vs {initial}");
    let accuracy: f64 = out.metrics["accuracy"].parse().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(out, execute_range(&kind, 0..100).unwrap());
    assert_eq!(out.work_units, 6 * 21 * 100 * 10);
}

#[test]
fn an_inference_fragment_commits_to_the_reference_models_outputs() {
    let kind = inference(101);
    let out = execute_range(&kind, 51..101).unwrap();
    let d = DataSet::new(8, 4, 101, 3).unwrap();
    let want = inference::forward(
        &training::Network::Linear(Model::reference(&d)),
        &d.shard(51..101).unwrap(),
    )
    .unwrap();
    assert_eq!(out.digest, hex(&want.tree().root()));
    assert_eq!(out.work_units, 2 * (8 * 4 + 4) * 50);
    let accuracy: f64 = out.metrics["accuracy"].parse().unwrap();
    assert!(accuracy > 0.8, "{accuracy}");
}

#[test]
fn a_data_fragment_commits_to_its_chunks() {
    for (op, per_byte) in [(Operation::Sha256, 16), (Operation::Tokenize, 4)] {
        let kind = data(op);
        let last = execute_range(&kind, 8_192..10_000).unwrap();
        let want = data::process(op, 9, 8_192..10_000, 1_000).unwrap();
        assert_eq!(last.digest, hex(&want.tree.root()));
        assert_eq!(last.work_units, per_byte * 1_808);
        assert_eq!(last.metrics["chunks"], "2");
        assert_eq!(last.metrics["tokens"], want.tokens.to_string());
    }
}

#[test]
fn digests_are_64_lowercase_hex_characters() {
    let out = execute_range(&data(Operation::Sha256), 0..4_096).unwrap();
    assert_eq!(out.digest.len(), 64);
    assert!(
        out.digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn oversized_fragments_are_refused_before_allocating() {
    let e = execute_range(&proof(16_384, 1), 0..1).unwrap_err();
    assert_eq!((e.field(), e.category()), ("dimension", "FragmentTooLarge"));
    let big = FragmentKind::Training {
        params: TrainingParams {
            features: 4096,
            classes: 2,
            samples: 1 << 20,
            learning_rate: 0.1,
            local_steps: 1,
            seed: 0,
            hidden: None,
        },
        epochs: 1,
    };
    assert_eq!(
        execute_range(&big, 0..1 << 20).unwrap_err().field(),
        "fragments"
    );
    let wide = FragmentKind::Inference {
        features: 4096,
        classes: 1024,
        samples: 1 << 20,
        seed: 0,
        hidden: None,
    };
    assert_eq!(
        execute_range(&wide, 0..1 << 20).unwrap_err().field(),
        "fragments"
    );
    let chunk = FragmentKind::DataProcessing {
        operation: Operation::Sha256,
        bytes: 1 << 40,
        chunk_size: 1 << 31,
        seed: 0,
    };
    assert_eq!(
        execute_range(&chunk, 0..1 << 32).unwrap_err().field(),
        "chunkSize"
    );
}

#[test]
fn bad_parameters_are_errors_naming_the_field() {
    let field = |k: FragmentKind| execute_range(&k, 0..1).unwrap_err().field();
    assert_eq!(field(proof(0, 1)), "dimension");
    assert_eq!(field(proof(8, 0)), "products");
    assert_eq!(field(training(10, 0)), "localSteps");
    assert_eq!(field(training(10, 101)), "localSteps");
    let with = |f: &dyn Fn(&mut FragmentKind)| {
        let mut k = training(10, 1);
        f(&mut k);
        k
    };
    let set_lr = |v: f32| {
        with(&move |k| {
            if let FragmentKind::Training { params, .. } = k {
                params.learning_rate = v;
            }
        })
    };
    assert_eq!(field(set_lr(0.0)), "learningRate");
    assert_eq!(field(set_lr(f32::NAN)), "learningRate");
    assert_eq!(
        field(with(&|k| {
            if let FragmentKind::Training { epochs, .. } = k {
                *epochs = 0;
            }
        })),
        "epochs"
    );
    assert_eq!(
        field(with(&|k| {
            if let FragmentKind::Training { params, .. } = k {
                params.classes = 1;
            }
        })),
        "classes"
    );
    assert_eq!(
        field(with(&|k| {
            if let FragmentKind::Training { params, epochs } = k {
                (params.samples, *epochs) = (u64::MAX, 2);
            }
        })),
        "samples"
    );
    let zero_chunk = FragmentKind::DataProcessing {
        operation: Operation::Sha256,
        bytes: 10,
        chunk_size: 0,
        seed: 0,
    };
    assert_eq!(field(zero_chunk), "chunkSize");
}

#[test]
fn ranges_outside_the_task_are_refused() {
    let kind = training(40, 2);
    assert!(execute_range(&kind, 39..40).is_ok());
    #[allow(clippy::reversed_empty_ranges)] // A reversed range is one of the bad inputs.
    let reversed = 9..3;
    for bad in [5..5, reversed, 30..41, u64::MAX - 1..u64::MAX] {
        let e = execute_range(&kind, bad.clone()).unwrap_err();
        assert_eq!(
            (e.field(), e.category()),
            ("items", "FragmentOutOfRange"),
            "{bad:?}"
        );
    }
}
