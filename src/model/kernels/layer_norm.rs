//! Layer norm of a block's rows with candle's arithmetic, so with the bits of
//! `candle_nn::ops::layer_norm` on the CPU: per row, the sum and the sum of squares in f32 in
//! order of feature, `mean = sum / n`, `var = sum2 / n - mean²`, `inv_std = 1 / sqrt(var + eps)`,
//! then `(x - mean) * inv_std * alpha + beta`.
//!
//! Written against the latency of those sums: candle runs each row's two as chains of
//! dependent adds, one row after the other on one thread, the team's other thread idle. Here
//! the chains of eight rows interleave, and the team's threads split the rows. Against
//! candle's (Intel Xeon, one process, passes alternated): Pythia-410M shape after 48 tokens,
//! a 32-node tree x0.987, 16 rows x0.993, 1-8 rows within 0.5%; the tiny target and draft,
//! 32 rows x0.976-0.981, 8 rows x0.978-0.982, 1 row x0.991-0.996.

use super::{parallel_columns, Columns};

/// Rows whose sums interleave: 16 chains, enough to keep the adders busy.
const ROWS: usize = 8;

/// The layer norm of every row of `src` (rows of `alpha.len()` floats), row-major.
pub(crate) fn layer_norm_rows(src: &[f32], alpha: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let dim = alpha.len();
    assert!(
        dim > 0 && beta.len() == dim && src.len().is_multiple_of(dim),
        "layer_norm_rows: {} floats, {} weights and {} biases are not whole rows",
        src.len(),
        dim,
        beta.len()
    );
    // Each element costs about four multiply-adds' time in its chain of adds.
    let work = 4 * src.len();
    // One row of the whole block, whose column ranges are groups of ROWS rows.
    let task = |groups: std::ops::Range<usize>, mut dst: Columns| {
        let first = groups.start * ROWS * dim;
        let out = dst.row(0);
        let src = &src[first..first + out.len()];
        let groups = src.chunks(ROWS * dim).zip(out.chunks_mut(ROWS * dim));
        for (src, out) in groups {
            if src.len() == ROWS * dim {
                norm_rows::<ROWS>(src, alpha, beta, eps, out);
            } else {
                for (src, out) in src.chunks(dim).zip(out.chunks_mut(dim)) {
                    norm_rows::<1>(src, alpha, beta, eps, out);
                }
            }
        }
    };
    parallel_columns(1, src.len(), ROWS * dim, work, task)
}

/// `R` rows of `alpha.len()` floats: their sums side by side, then each row's output.
#[inline(always)]
fn norm_rows<const R: usize>(src: &[f32], alpha: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let dim = alpha.len();
    let rows: [&[f32]; R] = std::array::from_fn(|r| &src[r * dim..][..dim]);
    let (mut sum, mut sum2) = ([0f32; R], [0f32; R]);
    // Feature by feature across the rows: the R rows' chains side by side.
    #[allow(clippy::needless_range_loop)]
    for i in 0..dim {
        for r in 0..R {
            let v = rows[r][i];
            sum[r] += v;
            sum2[r] += v * v;
        }
    }
    for (r, out) in out.chunks_exact_mut(dim).enumerate() {
        let mean = sum[r] / dim as f32;
        let var = sum2[r] / dim as f32 - mean * mean;
        let inv_std = (var + eps).sqrt().recip();
        let terms = rows[r].iter().zip(alpha).zip(beta);
        for (o, ((x, a), b)) in out.iter_mut().zip(terms) {
            *o = (x - mean) * inv_std * a + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::pseudo_random;
    use super::*;
    use candle_core::{Device, Tensor};

    /// Every number of rows, whole groups and not, one thread and the team's: candle's bits.
    #[test]
    fn every_row_has_the_bits_of_candles_layer_norm() {
        for dim in [1, 7, 128, 1024] {
            let alpha = pseudo_random(dim, 1);
            let beta = pseudo_random(dim, 2);
            for rows in [1, 2, 7, 8, 9, 17, 33] {
                // Not centred on 0, as a residual stream is not.
                let src: Vec<f32> = pseudo_random(rows * dim, rows as u64)
                    .iter()
                    .map(|v| 3.0 * v + 0.5)
                    .collect();
                let got = layer_norm_rows(&src, &alpha, &beta, 1e-5);
                let tensor =
                    |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu);
                let want = candle_nn::ops::layer_norm(
                    &tensor(&src, &[rows, dim]).unwrap(),
                    &tensor(&alpha, &[dim]).unwrap(),
                    &tensor(&beta, &[dim]).unwrap(),
                    1e-5,
                )
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{rows} rows of {dim}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "layer_norm_rows: 10 floats, 4 weights and 4 biases")]
    fn floats_that_are_not_whole_rows_are_refused() {
        layer_norm_rows(&[0.0; 10], &[1.0; 4], &[0.0; 4], 1e-5);
    }
}
