//! Which device runs a fragment. An [`Executor`] is opened once per worker process:
//! with a GPU (and the CUDA driver, cuBLAS and NVRTC to drive it), every fragment runs
//! on the GPU path; without one, and after any GPU failure, on the CPU reference path.
//! Both commit to identical digests, so the choice never changes a result, only its
//! speed. Parameters are checked once, before either path allocates anything.

use super::Committed;
use super::output;
use super::{FragmentError, FragmentKind, FragmentOutput, cpu};
use crate::compute_proof::challenge::{Commitment, Fragment};
use crate::gpu::{Gpu, GpuError, GpuTimings};
use crate::merkle::MerkleTree;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Where fragments may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePreference {
    /// The GPU when one can be opened, else the CPU.
    #[default]
    Auto,
    /// The CPU only.
    Cpu,
    /// The GPU; opening the executor fails without one.
    Gpu,
}

/// The device a fragment ran on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU reference path.
    Cpu,
    /// The GPU path.
    Gpu,
}

impl Device {
    /// `cpu` or `gpu`, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        }
    }
}

/// One executed fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// What it produced.
    pub output: FragmentOutput,
    /// Where it ran.
    pub device: Device,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Seconds the GPU was busy (CUDA events); 0 on the CPU.
    pub gpu_busy_seconds: f64,
    /// Why the GPU path was not used for a fragment it could run, if it failed.
    pub gpu_fallback: Option<String>,
    /// What the fragment keeps to answer its challenges.
    pub commitment: Option<Committed>,
}

/// Runs fragments on the best device this process could open.
#[derive(Debug)]
pub struct Executor {
    gpu: Option<Mutex<Gpu>>,
    gpu_name: Option<String>,
    /// Why there is no GPU path, when there is none.
    gpu_absent: Option<String>,
}

impl Executor {
    /// The CPU path only.
    pub fn cpu() -> Self {
        Self {
            gpu: None,
            gpu_name: None,
            gpu_absent: Some("the CPU was asked for".into()),
        }
    }

    /// Opens the device `preference` asks for (GPU ordinal 0).
    pub fn open(preference: DevicePreference) -> Result<Self, GpuError> {
        if preference == DevicePreference::Cpu {
            return Ok(Self::cpu());
        }
        match Gpu::open(0) {
            Ok(gpu) => Ok(Self {
                gpu_name: Some(gpu.device_name().to_string()),
                gpu: Some(Mutex::new(gpu)),
                gpu_absent: None,
            }),
            Err(e) if preference == DevicePreference::Auto => Ok(Self {
                gpu: None,
                gpu_name: None,
                gpu_absent: Some(e.to_string()),
            }),
            Err(e) => Err(e),
        }
    }

    /// The GPU's name, when the GPU path is open.
    pub fn gpu_name(&self) -> Option<&str> {
        self.gpu_name.as_deref()
    }

    /// Why the GPU path is closed, when it is.
    pub fn gpu_absent(&self) -> Option<&str> {
        self.gpu_absent.as_deref()
    }

    /// Runs work items `items` of `kind` (see [`execute_range`]).
    pub fn execute(
        &self,
        kind: &FragmentKind,
        items: Range<u64>,
    ) -> Result<Execution, FragmentError> {
        let started = Instant::now();
        output::check(kind, &items)?;
        let mut gpu_fallback = None;
        if let Some(gpu) = &self.gpu {
            let gpu = gpu.lock().unwrap_or_else(PoisonError::into_inner);
            match on_gpu(&gpu, kind, items.clone()) {
                Ok((output, commitment, t)) => {
                    return Ok(Execution {
                        output,
                        device: Device::Gpu,
                        seconds: started.elapsed().as_secs_f64(),
                        gpu_busy_seconds: t.busy_s(),
                        gpu_fallback: None,
                        commitment,
                    });
                }
                Err(e) => gpu_fallback = Some(e.to_string()),
            }
        }
        let (output, commitment) = cpu::run_committed(kind, items)?;
        Ok(Execution {
            output,
            device: Device::Cpu,
            seconds: started.elapsed().as_secs_f64(),
            gpu_busy_seconds: 0.0,
            gpu_fallback,
            commitment,
        })
    }
}

/// The GPU path of every kind, for items already checked.
fn on_gpu(
    gpu: &Gpu,
    kind: &FragmentKind,
    items: Range<u64>,
) -> Result<(FragmentOutput, Option<Committed>, GpuTimings), GpuError> {
    let len = items.end - items.start;
    let (out, t) = match *kind {
        FragmentKind::ComputeProof {
            dimension, seed, ..
        } => {
            let run = gpu.compute_proof(dimension, seed, items.clone())?;
            let f = Fragment {
                seed,
                n: dimension,
                first: items.start,
                count: len as u32,
            };
            let c = Commitment::new(f, run.rows.into_iter().map(MerkleTree::new).collect());
            // The host rebuilds the root from the device's row digests: a disagreement
            // is a GPU fault, and the CPU path runs instead.
            if c.root() != run.root {
                return Err(GpuError::Shape(
                    "the row digests do not give the fragment's root".into(),
                ));
            }
            let out = output::compute_proof(dimension, len, &c.root());
            return Ok((out, Some(Committed::Rows(c)), run.timings));
        }
        FragmentKind::Training { params, .. } => {
            let (trained, t) = gpu.training(params, items)?;
            (output::training(&params, len, &trained), t)
        }
        FragmentKind::Inference {
            features,
            classes,
            samples,
            seed,
            hidden,
        } => {
            let shape = (features, classes, hidden);
            let (tree, correct, t) = gpu.inference(shape, samples, seed, items)?;
            let out = output::inference(kind, len, &tree.root(), correct);
            return Ok((out, Some(Committed::Leaves(tree)), t));
        }
        FragmentKind::DataProcessing {
            operation,
            chunk_size,
            seed,
            ..
        } => {
            let (run, t) = gpu.data(operation, seed, items, chunk_size)?;
            // The host rebuilds the root from the device's leaves, as for compute-proof.
            let tree = MerkleTree::new(run.leaves);
            if tree.root() != run.root {
                return Err(GpuError::Shape(
                    "the chunk leaves do not give the fragment's root".into(),
                ));
            }
            let out = output::data(operation, len, run.chunks, run.tokens, &run.root);
            return Ok((out, Some(Committed::Leaves(tree)), t));
        }
    };
    Ok((out, None, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragment::execute_range;

    fn proof() -> FragmentKind {
        FragmentKind::ComputeProof {
            dimension: 24,
            products: 4,
            seed: 5,
        }
    }

    #[test]
    fn the_cpu_executor_gives_the_reference_output() {
        let e = Executor::cpu().execute(&proof(), 1..3).unwrap();
        assert_eq!(e.output, execute_range(&proof(), 1..3).unwrap());
        assert_eq!(e.device, Device::Cpu);
        assert_eq!(e.gpu_busy_seconds, 0.0);
    }

    #[test]
    fn every_challenged_kind_keeps_what_proves_its_commitment() {
        use crate::data::Operation;
        let ex = Executor::cpu();
        let rows = ex.execute(&proof(), 0..2).unwrap();
        assert!(
            matches!(&rows.commitment, Some(Committed::Rows(c)) if crate::fragment::hex(&c.root()) == rows.output.digest)
        );
        let leaves = [
            FragmentKind::DataProcessing {
                operation: Operation::Sha256,
                bytes: 10_000,
                chunk_size: 1_000,
                seed: 1,
            },
            FragmentKind::Inference {
                features: 4,
                classes: 3,
                samples: 50,
                seed: 1,
                hidden: Some(6),
            },
        ];
        for kind in leaves {
            let e = ex.execute(&kind, 0..10).unwrap();
            let Some(Committed::Leaves(tree)) = &e.commitment else {
                panic!("{kind:?} keeps no leaves");
            };
            assert_eq!(crate::fragment::hex(&tree.root()), e.output.digest);
        }
    }

    #[test]
    fn auto_always_opens_and_says_why_without_a_gpu() {
        let ex = Executor::open(DevicePreference::Auto).unwrap();
        match ex.gpu_name() {
            Some(name) => eprintln!("GPU path open on {name}"),
            None => {
                let why = ex.gpu_absent().unwrap();
                eprintln!("GPU path closed: {why}");
                assert!(!why.is_empty());
            }
        }
        // Same digest whichever device ran it.
        let e = ex.execute(&proof(), 0..4).unwrap();
        assert_eq!(e.output, execute_range(&proof(), 0..4).unwrap());
    }

    #[test]
    fn a_bad_range_is_refused_on_every_path() {
        let ex = Executor::open(DevicePreference::Auto).unwrap();
        assert!(matches!(
            ex.execute(&proof(), 3..9),
            Err(FragmentError::Range { .. })
        ));
        assert!(matches!(
            Executor::cpu().execute(&proof(), 2..2),
            Err(FragmentError::Range { .. })
        ));
    }
}
