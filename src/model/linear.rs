//! Dense layers. On CPU in f32 they run the dot-product kernels of [`super::kernels`]: candle's
//! gemm repacks the whole weight matrix on every call, so a product with a few rows (a
//! verification block, a tree level) costs several times a single-row one although it reads the
//! same weights, and its rounding depends on the row count. Each output here is one dot product
//! in a fixed order, so a token's numbers are the same in an AR step and in a verification block.

use super::aligned::AlignedF32;
use super::config::Activation;
use super::error::Result;
use super::kernels::{
    dot_rows, gelu_erf_in_place, parallel_columns, with_cpu_f32, Columns, WeightMatrix, Weights,
    ROW_GROUP,
};
use candle_core::op::{Gelu, Relu, Silu, UnaryOpT};
use candle_core::{DType, Device, Tensor};

/// `y = x Wᵀ + b` with `W` stored `[out, in]` as in checkpoints.
pub struct Linear {
    weight: Weight,
}

enum Weight {
    /// For candle's matmul (other devices and dtypes).
    Tensor {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    /// For the CPU kernels: the same `[out, in]` matrix, copied into their layout (the tensor
    /// is dropped).
    CpuF32 {
        matrix: WeightMatrix,
        bias: Option<Vec<f32>>,
    },
}

/// Output features per parallel task: one group of the kernels' tiles (whole packs, so that a
/// task's rows are a matrix of their own).
const ROWS_PER_TASK: usize = ROW_GROUP;

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = if matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32 {
            let (outputs, _) = weight.dims2()?;
            Weight::CpuF32 {
                matrix: with_cpu_f32(&weight, |data| WeightMatrix::new(data, outputs))?,
                bias: bias.map(|b| b.to_vec1()).transpose()?,
            }
        } else {
            Weight::Tensor { weight, bias }
        };
        Ok(Self { weight })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, None)
    }

    /// `activation(x Wᵀ + b)`. On the CPU kernels the activation runs inside the product's
    /// parallel tasks, on values still in cache: exact GELU on the vectorised kernel of
    /// `kernels/gelu.rs` (within 5e-7 of candle's libm erf), the others with candle's own
    /// scalar functions (the same bits as candle's ops).
    pub fn forward_then(&self, x: &Tensor, activation: Option<Activation>) -> Result<Tensor> {
        let (batch, rows, features) = x.dims3()?;
        let x2 = x.reshape((batch * rows, features))?;
        let y = match &self.weight {
            Weight::CpuF32 { matrix, bias } => {
                let out = Product {
                    weight: matrix.view(),
                    bias: bias.as_deref(),
                    activation,
                };
                out.run(&x2)?
            }
            Weight::Tensor { weight, bias } => {
                let y = x2.matmul(&weight.t()?)?;
                let y = match bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                };
                match activation {
                    Some(activation) => tensor_activation(&y, activation)?,
                    None => y,
                }
            }
        };
        Ok(y.reshape((batch, rows, ()))?)
    }
}

/// Floats between one input row's end and the next row's start when several share a product:
/// rows a multiple of 4 KiB long (1024 features) otherwise all map to the same few L1 sets,
/// and a tile reading 8 of them at once evicts its own inputs.
const ROW_PAD: usize = 16;

/// One product on the CPU kernels.
struct Product<'a> {
    weight: Weights<'a>,
    bias: Option<&'a [f32]>,
    activation: Option<Activation>,
}

impl Product<'_> {
    fn run(&self, x: &Tensor) -> Result<Tensor> {
        thread_local! {
            /// The inputs, copied onto a cache line into memory reused pass after pass (a
            /// fresh buffer each time cost page faults and a tenth of a tiny model's pass).
            static INPUTS: std::cell::RefCell<AlignedF32> = std::cell::RefCell::default();
        }
        let (rows, features) = x.dims2()?;
        if features != self.weight.features() {
            return Err(candle_core::Error::ShapeMismatchBinaryOp {
                lhs: x.shape().clone(),
                rhs: (self.weight.outputs(), self.weight.features()).into(),
                op: "linear",
            }
            .into());
        }
        let out = with_cpu_f32(x, |data| {
            INPUTS.with(|cell| {
                let mut inputs = cell.borrow_mut();
                let stride = if rows > 1 {
                    features + ROW_PAD
                } else {
                    features
                };
                inputs.assign_rows(data, features, stride);
                self.product(inputs.as_slice(), rows)
            })
        })?;
        Ok(Tensor::from_vec(
            out,
            (rows, self.weight.outputs()),
            x.device(),
        )?)
    }

    /// The row-major `[rows, outputs]` result for `rows` inputs, rows of equal length.
    fn product(&self, inputs: &[f32], rows: usize) -> Vec<f32> {
        let outputs = self.weight.outputs();
        // Each task fills its outputs' columns of every row.
        let task = |groups: std::ops::Range<usize>, mut dst: Columns| {
            let first = groups.start * ROWS_PER_TASK;
            let outs = first..first + dst.width();
            dot_rows(self.weight.rows(outs.clone()), inputs, &mut dst);
            self.finish(outs, dst);
        };
        let work = outputs * self.weight.features() * rows;
        parallel_columns(rows, outputs, ROWS_PER_TASK, work, task)
    }

    /// Bias, then activation, on a task's outputs `outs`, row by row.
    fn finish(&self, outs: std::ops::Range<usize>, mut dst: Columns) {
        for r in 0..dst.rows() {
            let row = dst.row(r);
            if let Some(bias) = self.bias {
                row.iter_mut()
                    .zip(&bias[outs.clone()])
                    .for_each(|(v, b)| *v += b);
            }
            if let Some(activation) = self.activation {
                apply_activation(activation, row);
            }
        }
    }
}

/// The exact GELU (Pythia's) on its vectorised kernel, the rest with candle's own functions.
fn apply_activation(activation: Activation, values: &mut [f32]) {
    let scalar: fn(f32) -> f32 = match activation {
        Activation::GeluErf => return gelu_erf_in_place(values),
        Activation::GeluTanh => Gelu::f32,
        Activation::Relu => Relu::f32,
        Activation::Silu => Silu::f32,
    };
    values.iter_mut().for_each(|v| *v = scalar(*v));
}

fn tensor_activation(y: &Tensor, activation: Activation) -> Result<Tensor> {
    Ok(match activation {
        Activation::GeluErf => y.gelu_erf()?,
        Activation::GeluTanh => y.gelu()?,
        Activation::Relu => y.relu()?,
        Activation::Silu => candle_nn::ops::silu(y)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor) -> Vec<Vec<f32>> {
        x.matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(b)
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    #[test]
    fn kernel_matches_gemm_for_every_row_count() {
        let d = Device::Cpu;
        for (out, inp) in [(7, 5), (70, 33), (300, 1030)] {
            let w = Tensor::randn(0f32, 1.0, (out, inp), &d).unwrap();
            let b = Tensor::randn(0f32, 1.0, out, &d).unwrap();
            let linear = Linear::new(w.clone(), Some(b.clone())).unwrap();
            for rows in [1, 2, 5, 33, 64, 65] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, inp), &d).unwrap();
                let ours: Vec<Vec<f32>> = linear
                    .forward(&x)
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                let theirs = reference(&x.squeeze(0).unwrap(), &w, &b);
                for (r, (a, e)) in ours.iter().zip(&theirs).enumerate() {
                    let diff = a
                        .iter()
                        .zip(e)
                        .map(|(p, q)| (p - q).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        diff < 1e-3,
                        "{out}x{inp}, {rows} rows: row {r} differs by {diff}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_or_in_a_block() {
        let d = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 200), &d).unwrap();
        let linear = Linear::new(w, None).unwrap();
        let block = Tensor::randn(0f32, 1.0, (1, 9, 200), &d).unwrap();
        let together: Vec<Vec<f32>> = linear
            .forward(&block)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (r, expected) in together.iter().enumerate() {
            let alone: Vec<f32> = linear
                .forward(&block.narrow(1, r, 1).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(&alone, expected, "row {r}");
        }
    }

    #[test]
    fn activations_match_candle_and_keep_a_row_the_same_in_any_block() {
        let d = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (600, 64), &d).unwrap();
        let b = Tensor::randn(0f32, 1.0, 600, &d).unwrap();
        let linear = Linear::new(w.clone(), Some(b.clone())).unwrap();
        let block = Tensor::randn(0f32, 1.0, (1, 17, 64), &d).unwrap();
        let plain = Tensor::new(reference(&block.squeeze(0).unwrap(), &w, &b), &d).unwrap();
        for activation in [
            Activation::GeluErf,
            Activation::GeluTanh,
            Activation::Relu,
            Activation::Silu,
        ] {
            let ours = linear.forward_then(&block, Some(activation)).unwrap();
            let theirs = tensor_activation(&plain, activation).unwrap();
            let diff = (ours.squeeze(0).unwrap() - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-3, "{activation:?} differs from candle by {diff}");
            for r in [0, 8, 16] {
                let alone = linear
                    .forward_then(&block.narrow(1, r, 1).unwrap(), Some(activation))
                    .unwrap();
                let together = ours.narrow(1, r, 1).unwrap();
                let bits = |t: &Tensor| -> Vec<u32> {
                    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                    v.into_iter().map(f32::to_bits).collect()
                };
                assert_eq!(bits(&alone), bits(&together), "{activation:?}, row {r}");
            }
        }
    }
}
