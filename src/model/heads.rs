//! The fused query/key/value product of a block, split into per-head queries, keys and values
//! with rotary embeddings applied, on CPU in f32 in one pass over the product.
//!
//! With candle this took a reshape, a transpose, three narrowed copies, two rotary ops and two
//! concatenations per layer: on a tiny model, several small strided copies and allocations
//! that cost more than the layer's arithmetic. The rotation here is candle's `rope`
//! (rotate-half) written out in its order, `x1 * cos - x2 * sin` and `x1 * sin + x2 * cos`,
//! each product rounded before the sum, so the bits are the same.

/// A block's queries, keys and values, each `[heads, rows, head_dim]`.
pub(crate) struct Heads {
    pub(crate) queries: Vec<f32>,
    pub(crate) keys: Vec<f32>,
    pub(crate) values: Vec<f32>,
}

/// The shape of one layer's fused product: per row, for each head, its query, key and value
/// of `head_dim` each (transformers' `query_key_value` layout); the first `rotary_dims` of each
/// query and key are rotated.
#[derive(Clone, Copy)]
pub(crate) struct HeadShape {
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) rotary_dims: usize,
}

/// Splits `qkv` (`[rows, heads * 3 * head_dim]`, row-major) and rotates its queries and keys
/// by row `r`'s `cos`/`sin` (`[rows, rotary_dims / 2]`).
pub(crate) fn split_rotate(qkv: &[f32], shape: HeadShape, cos: &[f32], sin: &[f32]) -> Heads {
    let HeadShape {
        heads,
        head_dim: d,
        rotary_dims,
    } = shape;
    let rows = qkv.len() / (3 * heads * d);
    let half = rotary_dims / 2;
    assert_eq!(
        qkv.len(),
        rows * 3 * heads * d,
        "qkv is not [rows, 3 * hidden]"
    );
    assert!(cos.len() >= rows * half && sin.len() >= rows * half);
    let mut out = Heads {
        queries: vec![0f32; rows * heads * d],
        keys: vec![0f32; rows * heads * d],
        values: vec![0f32; rows * heads * d],
    };
    for (row, fused) in qkv.chunks_exact(3 * heads * d).enumerate() {
        let (cos, sin) = (&cos[row * half..][..half], &sin[row * half..][..half]);
        for (head, parts) in fused.chunks_exact(3 * d).enumerate() {
            let at = (head * rows + row) * d;
            rotate(&parts[..d], cos, sin, &mut out.queries[at..at + d]);
            rotate(&parts[d..2 * d], cos, sin, &mut out.keys[at..at + d]);
            out.values[at..at + d].copy_from_slice(&parts[2 * d..]);
        }
    }
    out
}

/// Rotate-half on the first `2 * cos.len()` channels of `x`; the rest are copied.
fn rotate(x: &[f32], cos: &[f32], sin: &[f32], dst: &mut [f32]) {
    let half = cos.len();
    for i in 0..half {
        let (x1, x2) = (x[i], x[i + half]);
        dst[i] = x1 * cos[i] - x2 * sin[i];
        dst[i + half] = x1 * sin[i] + x2 * cos[i];
    }
    dst[2 * half..].copy_from_slice(&x[2 * half..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn matches_candle_split_and_rope_bit_for_bit() {
        let dev = Device::Cpu;
        for (heads, d, rotary_dims, rows) in [(4, 64, 16, 1), (4, 64, 16, 9), (2, 8, 8, 5)] {
            let shape = HeadShape {
                heads,
                head_dim: d,
                rotary_dims,
            };
            let qkv = Tensor::randn(0f32, 1.0, (rows, 3 * heads * d), &dev).unwrap();
            let cos = Tensor::randn(0f32, 1.0, (rows, rotary_dims / 2), &dev).unwrap();
            let sin = Tensor::randn(0f32, 1.0, (rows, rotary_dims / 2), &dev).unwrap();
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            let got = split_rotate(&flat(&qkv), shape, &flat(&cos), &flat(&sin));
            let per_head = qkv
                .reshape((1, rows, heads, 3 * d))
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let candle_rotated = |part: usize| -> Vec<f32> {
                let x = per_head.narrow(3, part * d, d).unwrap();
                let rotated = candle_nn::rotary_emb::rope(
                    &x.narrow(3, 0, rotary_dims).unwrap().contiguous().unwrap(),
                    &cos,
                    &sin,
                )
                .unwrap();
                let pass = x.narrow(3, rotary_dims, d - rotary_dims).unwrap();
                flat(&Tensor::cat(&[&rotated, &pass], 3).unwrap())
            };
            let bits = |v: &[f32]| -> Vec<u32> { v.iter().map(|x| x.to_bits()).collect() };
            assert_eq!(bits(&got.queries), bits(&candle_rotated(0)), "queries");
            assert_eq!(bits(&got.keys), bits(&candle_rotated(1)), "keys");
            let values = flat(&per_head.narrow(3, 2 * d, d).unwrap().contiguous().unwrap());
            assert_eq!(bits(&got.values), bits(&values), "values");
        }
    }
}
