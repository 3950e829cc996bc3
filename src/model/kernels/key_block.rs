//! Attention scores of several query rows on AVX-512, keys sixteen at a time with one key per
//! lane: written against the lane folds. Run as a product ([`super::dot_rows`]), every score
//! is a dot of `d` features whose 16 lanes fold by shuffles, and for `d = 64` those folds and
//! the accumulators parked between them cost as much as the four multiply-adds per lane: 32
//! rows against 1500 keys ran at 26-30 G multiply-adds/s on one thread of an Intel Xeon, a
//! quarter of its compute ceiling, and this kernel at 37-46.
//!
//! Here a block of 16 keys is transposed once (feature `i` of key `k` at `i * 16 + k`) and
//! serves every query row. Lane `k` of register `j` then accumulates the canonical dot's lane
//! `j` of key `k`, `Σ_{i ≡ j (mod 16)} key[i] · query[i]` by fused multiply-add from zero in
//! order of `i`, and the fold of the 16 lanes, (j, j+8), (j, j+4), (j, j+2), (0, 1), becomes
//! adds between registers. The adds pair the same values in the same order as
//! [`super::fold_lanes`], so every score has the bits of the canonical dot, whichever path
//! or batch computes it.

use std::arch::x86_64::*;

/// Keys per block: one per lane.
const KEYS: usize = 16;

/// Blocks ahead whose keys a block prefetches.
const AHEAD: usize = 3;

/// Query rows whose lanes are accumulated at once: 6 rows by 4 lanes fill 24 registers, and
/// each loaded key register serves the 6 rows.
const ROWS: usize = 6;

/// `scores[r * slots + s] = queries[r] · keys[s]` for every query row `r` (`d` floats each)
/// and key `s < slots` (`keys[s * d..][..d]`), `slots = scores.len() / rows`.
///
/// # Safety
/// The CPU must have AVX-512F. The shapes are asserted: `d` a multiple of 16, `keys` at least
/// `slots * d` floats, `queries` whole rows.
#[target_feature(enable = "avx512f")]
pub(super) fn key_dots_avx512(queries: &[f32], d: usize, keys: &[f32], scores: &mut [f32]) {
    let rows = queries.len() / d;
    let slots = scores.len() / rows;
    assert!(d.is_multiple_of(KEYS) && keys.len() >= slots * d && rows * d == queries.len());
    let mut transposed = vec![0f32; d * KEYS];
    let mut first = 0;
    while first < slots {
        let block = (slots - first).min(KEYS);
        // Three blocks on, into L2: after a 1500-token prompt the keys come from memory. Without
        // it 32-row passes gained nothing over the product (x1.00); the next block into L1
        // gave x0.98, this x0.95.
        let ahead = (first + AHEAD * KEYS).min(slots);
        for line in keys[ahead * d..(ahead + KEYS).min(slots) * d].chunks(KEYS) {
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast());
        }
        transpose(&keys[first * d..(first + block) * d], d, &mut transposed);
        let mut r = 0;
        while r < rows {
            // Even shares of at most ROWS: 7 rows go 4, 3 rather than 6, 1, and 32 rows end in
            // 5, 5 rather than 2.
            let left = rows - r;
            let n = left.div_ceil(left.div_ceil(ROWS));
            let queries = &queries[r * d..(r + n) * d];
            let scores = &mut scores[r * slots..];
            match n {
                6 => rows_against_block::<6>(queries, &transposed, scores, slots, first, block),
                5 => rows_against_block::<5>(queries, &transposed, scores, slots, first, block),
                4 => rows_against_block::<4>(queries, &transposed, scores, slots, first, block),
                3 => rows_against_block::<3>(queries, &transposed, scores, slots, first, block),
                2 => rows_against_block::<2>(queries, &transposed, scores, slots, first, block),
                _ => rows_against_block::<1>(queries, &transposed, scores, slots, first, block),
            }
            r += n;
        }
        first += block;
    }
}

/// The scores of `R` query rows against one transposed block of `block` keys, into columns
/// `first..first + block` of rows `0..R` of `scores` (rows `slots` apart).
#[inline]
#[target_feature(enable = "avx512f")]
fn rows_against_block<const R: usize>(
    queries: &[f32],
    transposed: &[f32],
    scores: &mut [f32],
    slots: usize,
    first: usize,
    block: usize,
) {
    let d = transposed.len() / KEYS;
    assert!(queries.len() == R * d && scores.len() >= (R - 1) * slots + first + block);
    // Lanes j, j+4, j+8, j+12 of every row: their two levels of the fold give quarter j.
    let mut quarters = [[_mm512_setzero_ps(); R]; 4];
    for (j, quarter) in quarters.iter_mut().enumerate() {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for step in (0..d).step_by(KEYS) {
            // SAFETY (both): feature `step + j + 4 * l < d` (`step <= d - 16`, `j + 4 * l <
            // 16`), whose 16 transposed floats and whose query float in each of the R rows lie
            // inside the slices (asserted above). Unchecked, as the bounds checks cost more
            // than the multiply-adds they guard.
            let lanes: [__m512; 4] = std::array::from_fn(|l| unsafe {
                let i = step + j + 4 * l;
                _mm512_loadu_ps(transposed.as_ptr().add(i * KEYS))
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                for (l, lane) in acc.iter_mut().enumerate() {
                    let at = r * d + step + j + 4 * l;
                    let query = _mm512_set1_ps(unsafe { *queries.get_unchecked(at) });
                    *lane = _mm512_fmadd_ps(lanes[l], query, *lane);
                }
            }
        }
        for (row, [lo, mid, hi, top]) in quarter.iter_mut().zip(acc) {
            // (j, j+8) and (j+4, j+12), then (j, j+4).
            *row = _mm512_add_ps(_mm512_add_ps(lo, hi), _mm512_add_ps(mid, top));
        }
    }
    let mask: __mmask16 = if block == KEYS { !0 } else { (1 << block) - 1 };
    let [q0, q1, q2, q3] = quarters;
    for r in 0..R {
        // (j, j+2), then (0, 1).
        let sums = _mm512_add_ps(_mm512_add_ps(q0[r], q2[r]), _mm512_add_ps(q1[r], q3[r]));
        let out = &mut scores[r * slots + first..][..block];
        // SAFETY: the mask writes lanes 0..block, all inside `out`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().cast(), mask, sums) };
    }
}

/// Writes `keys` (`block <= 16` keys of `d` floats) transposed: feature `i` of key `k` at
/// `out[i * 16 + k]`, the lanes of missing keys 0. Sixteen features at a time, as a 16 x 16
/// transpose in registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(keys: &[f32], d: usize, out: &mut [f32]) {
    let block = keys.len() / d;
    for feature in (0..d).step_by(KEYS) {
        let rows: [__m512; KEYS] = std::array::from_fn(|k| {
            if k < block {
                // SAFETY: the slice holds the 16 floats read.
                unsafe { _mm512_loadu_ps(keys[k * d + feature..][..KEYS].as_ptr().cast()) }
            } else {
                _mm512_setzero_ps()
            }
        });
        let columns = transpose_16x16(rows);
        for (c, column) in columns.into_iter().enumerate() {
            let at = &mut out[(feature + c) * KEYS..][..KEYS];
            // SAFETY: the slice holds the 16 floats written.
            unsafe { _mm512_storeu_ps(at.as_mut_ptr().cast(), column) };
        }
    }
}

/// Column `c` of the 16 x 16 matrix whose row `k` is `rows[k]`: unpacks pair rows within
/// 128-bit lanes, then lane shuffles gather each column's four quarters.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(rows: [__m512; KEYS]) -> [__m512; KEYS] {
    // Rows 2p, 2p+1 interleaved: lane L holds (a, b) at columns 4L, 4L+1 (lo) or 4L+2, 4L+3.
    let t: [__m512; KEYS] = std::array::from_fn(|k| {
        let (a, b) = (rows[k & !1], rows[k | 1]);
        if k % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // Rows 4g..4g+4 at column 4L + c in lane L of u[4g + c].
    let u: [__m512; KEYS] = std::array::from_fn(|k| {
        let (g, c) = (k / 4, k % 4);
        let (a, b) = (
            _mm512_castps_pd(t[4 * g + c / 2]),
            _mm512_castps_pd(t[4 * g + 2 + c / 2]),
        );
        _mm512_castpd_ps(if c % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Lanes (0, 2) and (1, 3) of groups (0, 1) and (2, 3) side by side, then of all four.
    std::array::from_fn(|column| {
        let (lane, c) = (column / 4, column % 4);
        let pick = |a: __m512, b: __m512, odd: bool| {
            if odd {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            }
        };
        let low = pick(u[c], u[4 + c], lane % 2 == 1);
        let high = pick(u[8 + c], u[12 + c], lane % 2 == 1);
        pick(low, high, lane >= 2)
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::pseudo_random;
    use super::super::{portable_dot_rows, Columns, Isa, Weights};
    use super::*;

    #[test]
    fn every_score_has_the_bits_of_the_canonical_dot() {
        if !Isa::supported().contains(&Isa::Avx512) {
            return;
        }
        for d in [16, 64, 80, 128] {
            for slots in [1, 15, 16, 17, 37, 100] {
                let keys = pseudo_random(slots * d, d as u64 + slots as u64);
                for rows in [1, 2, 5, 6, 7, 12, 13, 33] {
                    let queries = pseudo_random(rows * d, 7 * rows as u64);
                    let mut got = vec![f32::NAN; rows * slots];
                    // SAFETY: AVX-512 is supported (checked above); d is whole lanes.
                    unsafe { key_dots_avx512(&queries, d, &keys, &mut got) };
                    let mut want = vec![0f32; rows * slots];
                    let weights = Weights::row_major(&keys, d);
                    portable_dot_rows(weights, &queries, &mut Columns::all(&mut want, rows));
                    let (got, want): (Vec<u32>, Vec<u32>) = (
                        got.iter().map(|v| v.to_bits()).collect(),
                        want.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(got, want, "d {d}, {slots} keys, {rows} rows");
                }
            }
        }
    }

    #[test]
    fn sixteen_rows_come_back_as_columns() {
        if !Isa::supported().contains(&Isa::Avx512) {
            return;
        }
        let values: Vec<f32> = (0..256).map(|v| v as f32).collect();
        let mut out = vec![0f32; 256];
        // SAFETY: AVX-512 is supported (checked above).
        unsafe { transpose(&values, 16, &mut out) };
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, ((i % 16) * 16 + i / 16) as f32, "element {i}");
        }
    }
}
