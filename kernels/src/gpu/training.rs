//! Training and inference fragments on a GPU (`kernels/cuda/training.cu`): the data set
//! is regenerated on the device, and each step's forward pass, residuals and gradient
//! run there. The host keeps what is small and sequential, exactly as the CPU path does
//! it: the seeded initial (or reference) model, the gradient-descent update, the
//! quantized gradient commitment and the loss sums. Bit-identical to the CPU path. A
//! perceptron ([`training::mlp`]) adds its hidden layer's activations and
//! backpropagated residuals per sample; both layers' gradients are the softmax
//! gradient kernel run on other inputs.

use super::device::{Gpu, GpuTimings, secs};
use super::{GpuError, guard, launch};
use crate::inference;
use crate::merkle::MerkleTree;
use crate::training::mlp::MlpGradient;
use crate::training::network::NetworkGradient;
use crate::training::{self, DataSet, Gradient, Network, Trained, TrainingParams};
use cudarc::driver::CudaSlice;
use std::ops::Range;

/// A perceptron's hidden layer on the device, with its per-sample buffers.
struct Hidden {
    units: u32,
    /// `V` and `c`.
    v: CudaSlice<f32>,
    cb: CudaSlice<f32>,
    /// Activations and backpropagated residuals, `n × units`.
    act: CudaSlice<f32>,
    e: CudaSlice<f32>,
    /// The hidden layer's gradient.
    gv: CudaSlice<f32>,
    gc: CudaSlice<f32>,
}

/// A shard on the device, with the buffers of one evaluation.
struct Shard {
    n: u64,
    f: u32,
    c: u32,
    hidden: Option<Hidden>,
    x: CudaSlice<f32>,
    y: CudaSlice<u32>,
    /// The output layer (on `F` features, or on the hidden units).
    w: CudaSlice<f32>,
    b: CudaSlice<f32>,
    z: CudaSlice<f32>,
    /// Probabilities, or residuals when training.
    p: CudaSlice<f32>,
    loss: CudaSlice<f32>,
    /// Correct flags (training) or predictions (inference).
    out: CudaSlice<u32>,
}

fn shape(e: training::TrainingError) -> GpuError {
    GpuError::Shape(e.to_string())
}

impl Gpu {
    /// Regenerates items `range` of the data set on the device, with the buffers of a
    /// model with `hidden` units (none: softmax regression).
    fn shard(
        &self,
        data: &DataSet,
        seed: u64,
        range: &Range<u64>,
        hidden: Option<u32>,
    ) -> Result<Shard, GpuError> {
        let (f, c) = (data.features() as u32, data.classes() as u32);
        let n = range.end.saturating_sub(range.start);
        let (fu, cu, nu) = (u64::from(f), u64::from(c), n);
        let hu = hidden.map_or(0, u64::from);
        let inputs = if hidden.is_some() { hu } else { fu };
        // x, z, p; y, loss, out; the means; the output layer and its gradient; the
        // hidden layer, its gradient and two n × H buffers.
        self.ensure_memory(
            4 * (nu * fu + 2 * nu * cu + 3 * nu + fu * cu + 2 * (inputs + 1) * cu)
                + 4 * (2 * (fu + 1) * hu + 2 * nu * hu),
        )?;
        let mut means = self.stream.alloc_zeros::<f32>((fu * cu) as usize)?;
        launch::class_means(&self.stream, &self.k.class_means, seed, f, c, &mut means)?;
        let hidden = match hidden {
            None => None,
            Some(units) => Some(Hidden {
                units,
                v: self.stream.alloc_zeros((hu * fu) as usize)?,
                cb: self.stream.alloc_zeros(hu as usize)?,
                act: self.stream.alloc_zeros((nu * hu) as usize)?,
                e: self.stream.alloc_zeros((nu * hu) as usize)?,
                gv: self.stream.alloc_zeros((hu * fu) as usize)?,
                gc: self.stream.alloc_zeros(hu as usize)?,
            }),
        };
        let mut s = Shard {
            n,
            f,
            c,
            hidden,
            x: self.stream.alloc_zeros((nu * fu) as usize)?,
            y: self.stream.alloc_zeros(n as usize)?,
            w: self.stream.alloc_zeros((inputs * cu) as usize)?,
            b: self.stream.alloc_zeros(c as usize)?,
            z: self.stream.alloc_zeros((nu * cu) as usize)?,
            p: self.stream.alloc_zeros((nu * cu) as usize)?,
            loss: self.stream.alloc_zeros(n as usize)?,
            out: self.stream.alloc_zeros(n as usize)?,
        };
        launch::generate_shard(
            &self.stream,
            &self.k.generate_shard,
            [seed, data.samples(), range.start, n],
            (f, c),
            &means,
            &mut s.x,
            &mut s.y,
        )?;
        Ok(s)
    }

    /// Uploads `model` and runs the forward pass (`residuals`: training's residuals,
    /// backpropagated for a perceptron, and correct flags; else inference's
    /// probabilities and predictions).
    fn forward(&self, s: &mut Shard, model: &Network, residuals: bool) -> Result<(), GpuError> {
        let output = match model {
            Network::Linear(m) => m,
            Network::Mlp(m) => m.output(),
        };
        self.stream.memcpy_htod(output.weights(), &mut s.w)?;
        self.stream.memcpy_htod(output.bias(), &mut s.b)?;
        match (model, s.hidden.as_mut()) {
            (Network::Linear(_), None) => {
                let f = if residuals {
                    &self.k.softmax_residuals
                } else {
                    &self.k.softmax_forward
                };
                launch::softmax(
                    &self.stream,
                    f,
                    (&s.w, &s.b, &s.x, &s.y),
                    (s.n, s.f, s.c),
                    (&mut s.z, &mut s.p, &mut s.loss, &mut s.out),
                )
            }
            (Network::Mlp(m), Some(h)) => {
                self.stream.memcpy_htod(m.hidden_weights(), &mut h.v)?;
                self.stream.memcpy_htod(m.hidden_bias(), &mut h.cb)?;
                launch::mlp(
                    &self.stream,
                    if residuals {
                        &self.k.mlp_residuals
                    } else {
                        &self.k.mlp_forward
                    },
                    launch::MlpArgs {
                        v: &h.v,
                        cb: &h.cb,
                        w: &s.w,
                        b: &s.b,
                        x: &s.x,
                        y: &s.y,
                        shape: (s.n, s.f, h.units, s.c),
                    },
                    (&mut h.act, &mut s.z, &mut s.p, &mut h.e),
                    (&mut s.loss, &mut s.out),
                    residuals,
                )
            }
            _ => Err(GpuError::Shape(
                "the model's architecture does not match the shard's buffers".into(),
            )),
        }
    }

    /// The gradient of the last forward pass with residuals, to the host.
    fn gradient(
        &self,
        s: &mut Shard,
        gw: &mut CudaSlice<f32>,
        gb: &mut CudaSlice<f32>,
    ) -> Result<NetworkGradient, GpuError> {
        match s.hidden.as_mut() {
            None => {
                launch::gradient(
                    &self.stream,
                    &self.k.gradient,
                    (&s.p, &s.x),
                    (s.n, s.f, s.c),
                    (gw, gb),
                )?;
                Ok(NetworkGradient::Linear(Gradient {
                    weights: self.stream.clone_dtoh(gw)?,
                    bias: self.stream.clone_dtoh(gb)?,
                }))
            }
            Some(h) => {
                launch::gradient(
                    &self.stream,
                    &self.k.gradient,
                    (&s.p, &h.act),
                    (s.n, h.units, s.c),
                    (gw, gb),
                )?;
                launch::gradient(
                    &self.stream,
                    &self.k.gradient,
                    (&h.e, &s.x),
                    (s.n, s.f, h.units),
                    (&mut h.gv, &mut h.gc),
                )?;
                Ok(NetworkGradient::Mlp(MlpGradient {
                    hidden: Gradient {
                        weights: self.stream.clone_dtoh(&h.gv)?,
                        bias: self.stream.clone_dtoh(&h.gc)?,
                    },
                    output: Gradient {
                        weights: self.stream.clone_dtoh(gw)?,
                        bias: self.stream.clone_dtoh(gb)?,
                    },
                }))
            }
        }
    }

    /// The mean loss and the count of set flags, summed in shard order as the CPU does.
    fn loss_and_correct(&self, s: &Shard) -> Result<(f64, u64), GpuError> {
        let loss = self.stream.clone_dtoh(&s.loss)?;
        let flags = self.stream.clone_dtoh(&s.out)?;
        let total: f64 = loss.iter().map(|l| f64::from(*l)).sum();
        Ok((
            total / s.n.max(1) as f64,
            flags.iter().map(|v| u64::from(*v)).sum(),
        ))
    }

    /// Items `range` of a training task: `localSteps` steps from the seeded weights.
    pub fn training(
        &self,
        t: TrainingParams,
        range: Range<u64>,
    ) -> Result<(Trained, GpuTimings), GpuError> {
        guard(|| {
            let (f, c) = (t.features as usize, t.classes as usize);
            let data = DataSet::new(f, c, t.samples, t.seed).map_err(shape)?;
            training::check_learning_rate(t.learning_rate).map_err(shape)?;
            let mut model = Network::initial(&data, t.hidden, t.seed).map_err(shape)?;
            let start = self.event()?;
            let mut s = self.shard(&data, t.seed, &range, t.hidden)?;
            let generated = self.event()?;
            let mut commitment = model.commitment();
            let inputs = t.hidden.map_or(f, |h| h as usize);
            let (mut gw, mut gb) = (
                self.stream.alloc_zeros::<f32>(inputs * c)?,
                self.stream.alloc_zeros::<f32>(c)?,
            );
            let mut losses = Vec::with_capacity(t.local_steps as usize + 1);
            for _ in 0..t.local_steps {
                self.forward(&mut s, &model, true)?;
                let g = self.gradient(&mut s, &mut gw, &mut gb)?;
                losses.push(self.loss_and_correct(&s)?.0);
                model
                    .apply(&g, t.learning_rate, &mut commitment)
                    .map_err(shape)?;
            }
            self.forward(&mut s, &model, true)?;
            let (loss, correct) = self.loss_and_correct(&s)?;
            losses.push(loss);
            let end = self.event()?;
            end.synchronize()?;
            let timings = GpuTimings {
                generate_s: secs(&start, &generated)?,
                compute_s: secs(&generated, &end)?,
                commit_s: 0.0,
            };
            let trained = Trained {
                digest: commitment.finish(),
                losses,
                correct,
                samples: s.n,
            };
            Ok((trained, timings))
        })?
    }

    /// Items `range` of an inference task: the reference model's forward pass (a
    /// perceptron's with `hidden` units); returns the commitment's tree (built on the
    /// host from the predictions and probabilities) and the samples predicted right.
    pub fn inference(
        &self,
        (features, classes, hidden): (u32, u32, Option<u32>),
        samples: u64,
        seed: u64,
        range: Range<u64>,
    ) -> Result<(MerkleTree, u64, GpuTimings), GpuError> {
        guard(|| {
            let (f, c) = (features as usize, classes as usize);
            let data = DataSet::new(f, c, samples, seed).map_err(shape)?;
            let model = Network::reference(&data, hidden).map_err(shape)?;
            let start = self.event()?;
            let mut s = self.shard(&data, seed, &range, hidden)?;
            let generated = self.event()?;
            self.forward(&mut s, &model, false)?;
            let probabilities = self.stream.clone_dtoh(&s.p)?;
            let predictions = self.stream.clone_dtoh(&s.out)?;
            let labels = self.stream.clone_dtoh(&s.y)?;
            let end = self.event()?;
            end.synchronize()?;
            let correct = predictions
                .iter()
                .zip(&labels)
                .filter(|(p, y)| p == y)
                .count() as u64;
            let tree = inference::tree(c, &predictions, &probabilities);
            let timings = GpuTimings {
                generate_s: secs(&start, &generated)?,
                compute_s: secs(&generated, &end)?,
                commit_s: 0.0,
            };
            Ok((tree, correct, timings))
        })?
    }
}
