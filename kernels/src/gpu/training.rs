//! Training and inference fragments on a GPU (`kernels/cuda/training.cu`): the data set
//! is regenerated on the device, and each step's forward pass, residuals and gradient
//! run there. The host keeps what is small and sequential, exactly as the CPU path does
//! it: the seeded initial (or reference) model, the gradient-descent update, the
//! quantized gradient commitment and the loss sums. Bit-identical to the CPU path.

use super::device::{Gpu, GpuTimings, secs};
use super::{GpuError, guard, launch};
use crate::inference;
use crate::merkle::Hash;
use crate::training::{
    self, DataSet, Gradient, GradientCommitment, Model, Trained, TrainingParams,
};
use cudarc::driver::CudaSlice;
use std::ops::Range;

/// A shard on the device, with the buffers of one evaluation.
struct Shard {
    n: u64,
    f: u32,
    c: u32,
    x: CudaSlice<f32>,
    y: CudaSlice<u32>,
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
    /// Regenerates items `range` of the data set on the device.
    fn shard(&self, data: &DataSet, seed: u64, range: &Range<u64>) -> Result<Shard, GpuError> {
        let (f, c) = (data.features() as u32, data.classes() as u32);
        let n = range.end.saturating_sub(range.start);
        let (fu, cu, nu) = (u64::from(f), u64::from(c), n);
        // x, z, p; y, loss, out; the model and the means.
        self.ensure_memory(4 * (nu * fu + 2 * nu * cu + 3 * nu + 3 * fu * cu + cu))?;
        let mut means = self.stream.alloc_zeros::<f32>((fu * cu) as usize)?;
        launch::class_means(&self.stream, &self.k.class_means, seed, f, c, &mut means)?;
        let mut s = Shard {
            n,
            f,
            c,
            x: self.stream.alloc_zeros((nu * fu) as usize)?,
            y: self.stream.alloc_zeros(n as usize)?,
            w: self.stream.alloc_zeros((fu * cu) as usize)?,
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

    /// Uploads `model` and runs the forward pass (`residuals`: training's residuals and
    /// correct flags; else inference's probabilities and predictions).
    fn forward(&self, s: &mut Shard, model: &Model, residuals: bool) -> Result<(), GpuError> {
        self.stream.memcpy_htod(model.weights(), &mut s.w)?;
        self.stream.memcpy_htod(model.bias(), &mut s.b)?;
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
            let start = self.event()?;
            let mut s = self.shard(&data, t.seed, &range)?;
            let generated = self.event()?;
            let mut model = Model::initial(&data, t.seed);
            let mut commitment = GradientCommitment::new(f, c);
            let (mut gw, mut gb) = (
                self.stream.alloc_zeros::<f32>(f * c)?,
                self.stream.alloc_zeros::<f32>(c)?,
            );
            let mut initial_loss = None;
            for _ in 0..t.local_steps {
                self.forward(&mut s, &model, true)?;
                launch::gradient(
                    &self.stream,
                    &self.k.gradient,
                    (&s.p, &s.x),
                    (s.n, s.f, s.c),
                    (&mut gw, &mut gb),
                )?;
                if initial_loss.is_none() {
                    initial_loss = Some(self.loss_and_correct(&s)?.0);
                }
                let g = Gradient {
                    weights: self.stream.clone_dtoh(&gw)?,
                    bias: self.stream.clone_dtoh(&gb)?,
                };
                commitment.push(&g);
                training::descend(&mut model, &g, t.learning_rate);
            }
            self.forward(&mut s, &model, true)?;
            let (loss, correct) = self.loss_and_correct(&s)?;
            let end = self.event()?;
            end.synchronize()?;
            let timings = GpuTimings {
                generate_s: secs(&start, &generated)?,
                compute_s: secs(&generated, &end)?,
                commit_s: 0.0,
            };
            let trained = Trained {
                digest: commitment.finish(),
                initial_loss: initial_loss.unwrap_or(loss),
                loss,
                accuracy: correct as f64 / s.n.max(1) as f64,
            };
            Ok((trained, timings))
        })?
    }

    /// Items `range` of an inference task: the reference model's forward pass; returns
    /// the commitment and the accuracy.
    pub fn inference(
        &self,
        (features, classes): (u32, u32),
        samples: u64,
        seed: u64,
        range: Range<u64>,
    ) -> Result<(Hash, f64, GpuTimings), GpuError> {
        guard(|| {
            let (f, c) = (features as usize, classes as usize);
            let data = DataSet::new(f, c, samples, seed).map_err(shape)?;
            let start = self.event()?;
            let mut s = self.shard(&data, seed, &range)?;
            let generated = self.event()?;
            self.forward(&mut s, &Model::reference(&data), false)?;
            let probabilities = self.stream.clone_dtoh(&s.p)?;
            let predictions = self.stream.clone_dtoh(&s.out)?;
            let labels = self.stream.clone_dtoh(&s.y)?;
            let end = self.event()?;
            end.synchronize()?;
            let correct = predictions
                .iter()
                .zip(&labels)
                .filter(|(p, y)| p == y)
                .count();
            let digest = inference::commitment(f, c, &predictions, &probabilities);
            let timings = GpuTimings {
                generate_s: secs(&start, &generated)?,
                compute_s: secs(&generated, &end)?,
                commit_s: 0.0,
            };
            Ok((digest, correct as f64 / s.n.max(1) as f64, timings))
        })?
    }
}
