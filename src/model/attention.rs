//! Attention of a block's queries over the cache on CPU in f32, head by head: the dots of all
//! the block's queries with the head's keys as one product, then per query the scores of the
//! visible slots, softmax and the weighted sum of values. It replaces seven candle ops (two of
//! them gemm calls that are slow for few rows) and, like the dense kernels, computes each
//! token's output the same way however many tokens share the block.

use super::error::Result;
use super::kernels::{
    cpu_f32, key_dots, parallel_columns, softmax_unnormalised, weighted_sums, Columns,
};
use candle_core::Tensor;

/// `q` `[heads, t, d]`, `keys`/`values` `[1, heads, total, d]` views of the cache, `mask`
/// `[t, total]` of 0 / -inf or `None` for all visible. Returns `[1, t, heads * d]`.
pub(crate) fn attend(
    q: &[f32],
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&[f32]>,
) -> Result<Tensor> {
    let (_, heads, total, d) = keys.dims4()?;
    let t = q.len() / (heads * d);
    let (k_storage, k_layout) = keys.storage_and_layout();
    let (v_storage, v_layout) = values.storage_and_layout();
    let cache = CacheView {
        keys: cpu_f32(&k_storage)?,
        values: cpu_f32(&v_storage)?,
        key_at: Strides::of(k_layout),
        value_at: Strides::of(v_layout),
    };
    let scale = 1.0 / (d as f32).sqrt();
    // The threads split the heads, and each runs every row of a head in turn, so that a head's
    // keys and values come from memory once and stay in cache for its other rows. Taken row
    // by row, a block of t rows read the whole layer's cache t times: after a 1500-token
    // prompt (Pythia-410M shape, one process, passes alternated), an 8-row pass took 143 ms
    // that way against 117 ms head by head, a 32-node tree 386 against 311 ms; 1 row the same.
    // The scores of a head's rows are one product, whose tiles read each key for up to 8 rows.
    let task = |own_heads: std::ops::Range<usize>, mut dst: Columns| {
        let first = own_heads.start;
        let mut scores = vec![0f32; t * total];
        let mut sums = vec![0f32; t];
        let mut head_out = vec![0f32; t * d];
        for head in own_heads {
            cache.key_dots(head, &q[head * t * d..][..t * d], d, &mut scores);
            for (row, (scores, sum)) in scores.chunks_mut(total).zip(&mut sums).enumerate() {
                let visible = mask.map(|m| &m[row * total..(row + 1) * total]);
                *sum = softmax_unnormalised(scores, visible, scale);
            }
            head_out.fill(0.0);
            cache.weighted_sums(head, &scores, &mut head_out, t);
            for (row, (weighted, sum)) in head_out.chunks(d).zip(&sums).enumerate() {
                let norm = 1.0 / sum;
                let out = &mut dst.row(row)[(head - first) * d..][..d];
                out.iter_mut()
                    .zip(weighted)
                    .for_each(|(o, w)| *o = w * norm);
            }
        }
    };
    let out = parallel_columns(t, heads * d, d, 2 * t * heads * total * d, task);
    drop((k_storage, v_storage));
    Ok(Tensor::from_vec(out, (1, t, heads * d), keys.device())?)
}

/// Offsets of a `[1, heads, slots, d]` view into its storage.
struct Strides {
    start: usize,
    head: usize,
    slot: usize,
}

impl Strides {
    fn of(layout: &candle_core::Layout) -> Self {
        let stride = layout.stride();
        Self {
            start: layout.start_offset(),
            head: stride[1],
            slot: stride[2],
        }
    }

    fn at(&self, head: usize, slot: usize) -> usize {
        self.start + head * self.head + slot * self.slot
    }
}

struct CacheView<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    key_at: Strides,
    value_at: Strides,
}

impl CacheView<'_> {
    /// Every query row's dots with the head's keys, `scores` `[rows, total]`.
    fn key_dots(&self, head: usize, queries: &[f32], d: usize, scores: &mut [f32]) {
        let keys = &self.keys[self.key_at.at(head, 0)..];
        key_dots(queries, d, keys, self.key_at.slot, scores);
    }

    /// Every row's sum of the head's values weighted by its softmax weights (`weights`
    /// `[rows, total]`), added into `out` `[rows, d]`.
    fn weighted_sums(&self, head: usize, weights: &[f32], out: &mut [f32], rows: usize) {
        let values = &self.values[self.value_at.at(head, 0)..];
        weighted_sums(weights, values, self.value_at.slot, out, rows);
    }
}
