//! Dense layers. On CPU in f32 they run the dot-product kernels of [`super::kernels`]: candle's
//! gemm repacks the whole weight matrix on every call, so a product with a few rows (a
//! verification block, a tree level) costs several times a single-row one although it reads the
//! same weights, and its rounding depends on the row count. Each output here is one dot product
//! in a fixed order, so a token's numbers are the same in an AR step and in a verification block.

use super::aligned::AlignedF32;
use super::error::Result;
use super::kernels::{cpu_f32, dot_rows, parallel_chunks, ROW_GROUP};
use candle_core::{DType, Device, Tensor};

/// `y = x Wᵀ + b` with `W` stored `[out, in]` as in checkpoints.
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

enum Weight {
    /// For candle's matmul (other devices and dtypes).
    Tensor(Tensor),
    /// For the CPU kernels: the same `[out, in]` matrix, copied to start on a cache line (the
    /// tensor is dropped).
    CpuF32 { data: AlignedF32, outputs: usize },
}

/// Output features per parallel task: one group of the kernels' tiles.
const ROWS_PER_TASK: usize = ROW_GROUP;

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = if matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32 {
            let (outputs, features) = weight.dims2()?;
            let weight = weight.contiguous()?;
            let (storage, layout) = weight.storage_and_layout();
            let rows = &cpu_f32(&storage)?[layout.start_offset()..][..outputs * features];
            Weight::CpuF32 {
                data: AlignedF32::from_slice(rows),
                outputs,
            }
        } else {
            Weight::Tensor(weight)
        };
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, rows, features) = x.dims3()?;
        let x2 = x.reshape((batch * rows, features))?;
        let y = match &self.weight {
            Weight::CpuF32 { data, outputs } => self.on_cpu(&x2, data.as_slice(), *outputs)?,
            Weight::Tensor(weight) => {
                let y = x2.matmul(&weight.t()?)?;
                match &self.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                }
            }
        };
        Ok(y.reshape((batch, rows, ()))?)
    }

    fn on_cpu(&self, x: &Tensor, weight: &[f32], outputs: usize) -> Result<Tensor> {
        let (rows, features) = x.dims2()?;
        let inputs = AlignedF32::from_slice(&x.flatten_all()?.to_vec1::<f32>()?);
        let inputs = inputs.as_slice();
        let bias: Option<Vec<f32>> = self.bias.as_ref().map(|b| b.to_vec1()).transpose()?;
        // Output laid out feature-major ([out, rows]) so each task writes one contiguous block.
        let mut out_major = vec![0f32; outputs * rows];
        let task = |groups: std::ops::Range<usize>, dst: &mut [f32]| {
            let first = groups.start * ROWS_PER_TASK;
            let outs = first..first + dst.len() / rows;
            let w = &weight[outs.start * features..outs.end * features];
            dot_rows(w, inputs, features, dst);
            if let Some(bias) = &bias {
                for (out, b) in dst.chunks_mut(rows).zip(&bias[outs]) {
                    out.iter_mut().for_each(|v| *v += b);
                }
            }
        };
        parallel_chunks(
            &mut out_major,
            ROWS_PER_TASK * rows,
            outputs * features * rows,
            task,
        );
        Ok(Tensor::from_vec(out_major, (outputs, rows), x.device())?
            .t()?
            .contiguous()?)
    }
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
}
