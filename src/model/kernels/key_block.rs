//! Attention scores of several query rows, keys sixteen (AVX-512) or eight (AVX2) at a time
//! with one key per lane: written against the lane folds. Run as a product
//! ([`super::dot_rows`]), every score is a dot of `d` features whose 16 lanes fold by
//! shuffles, and for `d = 64` those folds and the accumulators parked between them cost as
//! much as the four multiply-adds per lane: 32
//! rows against 1500 keys ran at 26-30 G multiply-adds/s on one thread of an Intel Xeon, a
//! quarter of its compute ceiling, and this kernel at 37-46.
//!
//! Here a block of 16 keys is transposed once (feature `i` of key `k` at `i * 16 + k`) and
//! serves every query row. Lane `k` of register `j` then accumulates the canonical dot's lane
//! `j` of key `k`, `Σ_{i ≡ j (mod 16)} key[i] · query[i]` by fused multiply-add from zero in
//! order of `i`, and the fold of the 16 lanes, (j, j+8), (j, j+4), (j, j+2), (0, 1), becomes
//! adds between registers. The adds pair the same values in the same order as
//! [`super::fold_lanes`], so every score has the bits of the canonical dot, whichever path
//! or batch computes it. AVX2 does the same with 8 keys per register and fewer rows at once.

use std::arch::x86_64::*;

/// Keys per AVX-512 block: one per lane.
const KEYS: usize = 16;

/// Keys ahead of a block whose lines it prefetches: three AVX-512 blocks.
const AHEAD_KEYS: usize = 3 * KEYS;

/// Query rows whose lanes are accumulated at once on AVX-512: 6 rows by 4 lanes fill 24
/// registers, and each loaded key register serves the 6 rows.
const ROWS: usize = 6;

/// `scores[r * slots + s] = queries[r] · keys[s]` for every query row `r` (`d` floats each)
/// and key `s < slots` (`keys[s * d..][..d]`), `slots = scores.len() / rows`.
///
/// # Safety
/// The CPU must have AVX-512F. The shapes are asserted: `d` a multiple of 16, `keys` at least
/// `slots * d` floats, `queries` whole rows.
#[target_feature(enable = "avx512f")]
pub(super) fn key_dots_avx512(queries: &[f32], d: usize, keys: &[f32], scores: &mut [f32]) {
    // SAFETY: this function runs only with AVX-512F.
    unsafe { key_dots_in_blocks::<Avx512>(queries, d, keys, scores) }
}

/// [`key_dots_avx512`] on AVX2: blocks of 8 keys, each loaded key register serving up to 3
/// rows.
///
/// # Safety
/// The CPU must have AVX2 and FMA. The shapes are asserted as for [`key_dots_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(super) fn key_dots_avx2(queries: &[f32], d: usize, keys: &[f32], scores: &mut [f32]) {
    // SAFETY: this function runs only with AVX2 and FMA.
    unsafe { key_dots_in_blocks::<Avx2>(queries, d, keys, scores) }
}

/// One path's blocks of keys.
trait Blocks {
    /// Keys per block: one per lane.
    const KEYS: usize;
    /// Query rows accumulated at once, at most.
    const ROWS: usize;

    /// Writes `keys` (at most [`Self::KEYS`] keys of `d` floats) transposed into `out`.
    ///
    /// # Safety
    /// The CPU must run the path.
    unsafe fn transpose(keys: &[f32], d: usize, out: &mut [f32]);

    /// The scores of `rows` (at most [`Self::ROWS`]) query rows against a transposed block,
    /// as [`rows_against_block`].
    ///
    /// # Safety
    /// The CPU must run the path.
    unsafe fn rows_against_block(rows: usize, at: BlockAt);
}

/// Where a share of query rows meets a transposed block of `block` keys: `queries` the share's
/// rows, `scores` from its first row on, columns `first..first + block` (rows `slots` apart).
struct BlockAt<'a> {
    queries: &'a [f32],
    transposed: &'a [f32],
    scores: &'a mut [f32],
    slots: usize,
    first: usize,
    block: usize,
}

/// The driver of both paths: inlined into each path's entry, so that its kernels inline too.
///
/// # Safety
/// The CPU must run the path `P`.
#[inline(always)]
unsafe fn key_dots_in_blocks<P: Blocks>(
    queries: &[f32],
    d: usize,
    keys: &[f32],
    scores: &mut [f32],
) {
    let rows = queries.len() / d;
    let slots = scores.len() / rows;
    assert!(d.is_multiple_of(KEYS) && keys.len() >= slots * d && rows * d == queries.len());
    let mut transposed = vec![0f32; d * P::KEYS];
    let mut first = 0;
    while first < slots {
        let block = (slots - first).min(P::KEYS);
        // Into L2 ahead: after a 1500-token prompt the keys come from memory. Without it
        // 32-row passes gained nothing over the product on AVX-512 (x1.00); the next block
        // into L1 gave x0.98, three blocks on into L2 x0.95.
        prefetch_keys(keys, d, first + AHEAD_KEYS, P::KEYS, slots);
        // SAFETY (both): the caller's CPU runs the path.
        unsafe { P::transpose(&keys[first * d..(first + block) * d], d, &mut transposed) };
        for (r, n) in even_shares(rows, P::ROWS) {
            let at = BlockAt {
                queries: &queries[r * d..(r + n) * d],
                transposed: &transposed,
                scores: &mut scores[r * slots..],
                slots,
                first,
                block,
            };
            unsafe { P::rows_against_block(n, at) };
        }
        first += block;
    }
}

struct Avx512;

impl Blocks for Avx512 {
    const KEYS: usize = KEYS;
    const ROWS: usize = ROWS;

    #[inline(always)]
    unsafe fn transpose(keys: &[f32], d: usize, out: &mut [f32]) {
        // SAFETY: the caller's CPU runs AVX-512F.
        unsafe { transpose(keys, d, out) }
    }

    #[inline(always)]
    unsafe fn rows_against_block(rows: usize, at: BlockAt) {
        // SAFETY (all): the caller's CPU runs AVX-512F.
        unsafe {
            match rows {
                6 => rows_against_block::<6>(at),
                5 => rows_against_block::<5>(at),
                4 => rows_against_block::<4>(at),
                3 => rows_against_block::<3>(at),
                2 => rows_against_block::<2>(at),
                _ => rows_against_block::<1>(at),
            }
        }
    }
}

struct Avx2;

impl Blocks for Avx2 {
    const KEYS: usize = KEYS_AVX2;
    const ROWS: usize = ROWS_AVX2;

    #[inline(always)]
    unsafe fn transpose(keys: &[f32], d: usize, out: &mut [f32]) {
        // SAFETY: the caller's CPU runs AVX2.
        unsafe { transpose_avx2(keys, d, out) }
    }

    #[inline(always)]
    unsafe fn rows_against_block(rows: usize, at: BlockAt) {
        // SAFETY (all): the caller's CPU runs AVX2 and FMA.
        unsafe {
            match rows {
                3 => rows_against_block_avx2::<3>(at),
                2 => rows_against_block_avx2::<2>(at),
                _ => rows_against_block_avx2::<1>(at),
            }
        }
    }
}

/// The scores of `R` query rows against one transposed block of `block` keys, into columns
/// `first..first + block` of rows `0..R` of `scores` (rows `slots` apart).
#[inline]
#[target_feature(enable = "avx512f")]
fn rows_against_block<const R: usize>(at: BlockAt) {
    let BlockAt {
        queries,
        transposed,
        scores,
        slots,
        first,
        block,
    } = at;
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

/// AVX2: keys per block, one per lane of a 256-bit register.
const KEYS_AVX2: usize = 8;

/// AVX2: query rows accumulated at once. 3 rows by 4 lanes fill 12 of the 16 registers, next
/// to one key register and one broadcast query.
const ROWS_AVX2: usize = 3;

/// [`rows_against_block`] on AVX2, for blocks of [`KEYS_AVX2`] keys. Each key register is
/// loaded once per feature for the `R` rows, so that `4 * R` accumulators, it and the
/// broadcast query fit the 16 registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn rows_against_block_avx2<const R: usize>(at: BlockAt) {
    let BlockAt {
        queries,
        transposed,
        scores,
        slots,
        first,
        block,
    } = at;
    let d = transposed.len() / KEYS_AVX2;
    assert!(queries.len() == R * d && scores.len() >= (R - 1) * slots + first + block);
    let mut quarters = [[_mm256_setzero_ps(); R]; 4];
    for (j, quarter) in quarters.iter_mut().enumerate() {
        let mut acc = [[_mm256_setzero_ps(); 4]; R];
        for step in (0..d).step_by(KEYS) {
            for l in 0..4 {
                let i = step + j + 4 * l;
                // SAFETY (both): as in `rows_against_block`, feature `i < d`, whose 8
                // transposed floats and whose query float in each of the R rows lie inside the
                // slices (asserted above).
                let lane = unsafe { _mm256_loadu_ps(transposed.as_ptr().add(i * KEYS_AVX2)) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    let query = _mm256_set1_ps(unsafe { *queries.get_unchecked(r * d + i) });
                    acc[l] = _mm256_fmadd_ps(lane, query, acc[l]);
                }
            }
        }
        for (row, [lo, mid, hi, top]) in quarter.iter_mut().zip(acc) {
            // (j, j+8) and (j+4, j+12), then (j, j+4).
            *row = _mm256_add_ps(_mm256_add_ps(lo, hi), _mm256_add_ps(mid, top));
        }
    }
    let [q0, q1, q2, q3] = quarters;
    for r in 0..R {
        // (j, j+2), then (0, 1).
        let sums = _mm256_add_ps(_mm256_add_ps(q0[r], q2[r]), _mm256_add_ps(q1[r], q3[r]));
        let mut lanes = [0f32; KEYS_AVX2];
        // SAFETY: `lanes` holds the 8 floats written.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sums) };
        scores[r * slots + first..][..block].copy_from_slice(&lanes[..block]);
    }
}

/// [`transpose`] on AVX2: `keys` (`block <= 8` keys of `d` floats) with feature `i` of key
/// `k` at `out[i * 8 + k]`, eight features at a time as an 8 x 8 transpose in registers.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose_avx2(keys: &[f32], d: usize, out: &mut [f32]) {
    let block = keys.len() / d;
    for feature in (0..d).step_by(KEYS_AVX2) {
        let rows: [__m256; KEYS_AVX2] = std::array::from_fn(|k| {
            if k < block {
                // SAFETY: the slice holds the 8 floats read.
                unsafe { _mm256_loadu_ps(keys[k * d + feature..][..KEYS_AVX2].as_ptr()) }
            } else {
                _mm256_setzero_ps()
            }
        });
        for (c, column) in transpose_8x8(rows).into_iter().enumerate() {
            let at = &mut out[(feature + c) * KEYS_AVX2..][..KEYS_AVX2];
            // SAFETY: the slice holds the 8 floats written.
            unsafe { _mm256_storeu_ps(at.as_mut_ptr(), column) };
        }
    }
}

/// Column `c` of the 8 x 8 matrix whose row `k` is `rows[k]`: unpacks pair rows, shuffles
/// gather four rows' column in each 128-bit half, and the halves of rows 0-3 and 4-7 join.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose_8x8(rows: [__m256; KEYS_AVX2]) -> [__m256; KEYS_AVX2] {
    // Rows 2p, 2p+1 interleaved: columns (0, 1 | 4, 5) from lo, (2, 3 | 6, 7) from hi.
    let t: [__m256; KEYS_AVX2] = std::array::from_fn(|k| {
        let (a, b) = (rows[k & !1], rows[k | 1]);
        if k % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // Rows 4g..4g+4 of columns (c, c + 4) in u[4g + c], c < 4.
    let u: [__m256; KEYS_AVX2] = std::array::from_fn(|k| {
        let (g, c) = (k / 4, k % 4);
        let (a, b) = (t[4 * g + c / 2], t[4 * g + 2 + c / 2]);
        if c % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|column| {
        let c = column % 4;
        if column < 4 {
            _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c])
        }
    })
}

/// `(first row, rows)` of each share when `rows` split evenly into shares of at most `max`:
/// 7 rows in sixes go 4, 3 rather than 6, 1, and 32 rows end in 5, 5 rather than 6, 2.
fn even_shares(rows: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut r = 0;
    std::iter::from_fn(move || {
        let left = rows - r;
        (left > 0).then(|| {
            let n = left.div_ceil(left.div_ceil(max));
            r += n;
            (r - n, n)
        })
    })
}

/// Prefetches into L2 the keys `from..from + count` (those below `slots`).
fn prefetch_keys(keys: &[f32], d: usize, from: usize, count: usize, slots: usize) {
    let from = from.min(slots);
    for line in keys[from * d..(from + count).min(slots) * d].chunks(KEYS) {
        // SAFETY: a prefetch reads nothing; SSE is x86_64's baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::pseudo_random;
    use super::super::{portable_dot_rows, Columns, Isa, Weights};
    use super::*;

    /// Both paths' key blocks against the portable product, for every number of rows up to
    /// 13 (every share of either path) and 33, keys in whole blocks and not.
    #[test]
    fn every_score_has_the_bits_of_the_canonical_dot() {
        type KeyDots = unsafe fn(&[f32], usize, &[f32], &mut [f32]);
        let mut paths: Vec<(&str, KeyDots)> = Vec::new();
        if Isa::supported().contains(&Isa::Avx512) {
            paths.push(("AVX-512", key_dots_avx512));
        }
        if Isa::supported().contains(&Isa::Avx2) {
            paths.push(("AVX2", key_dots_avx2));
        }
        for d in [16, 64, 80, 128] {
            for slots in [1, 7, 8, 9, 15, 16, 17, 37, 100] {
                let keys = pseudo_random(slots * d, d as u64 + slots as u64);
                for rows in (1..=13).chain([33]) {
                    let queries = pseudo_random(rows * d, 7 * rows as u64);
                    let mut want = vec![0f32; rows * slots];
                    let weights = Weights::row_major(&keys, d);
                    portable_dot_rows(weights, &queries, &mut Columns::all(&mut want, rows));
                    for (name, key_dots) in &paths {
                        let mut got = vec![f32::NAN; rows * slots];
                        // SAFETY: the path is supported (checked above); d is whole lanes.
                        unsafe { key_dots(&queries, d, &keys, &mut got) };
                        let (got, want): (Vec<u32>, Vec<u32>) = (
                            got.iter().map(|v| v.to_bits()).collect(),
                            want.iter().map(|v| v.to_bits()).collect(),
                        );
                        assert_eq!(got, want, "{name}: d {d}, {slots} keys, {rows} rows");
                    }
                }
            }
        }
    }

    #[test]
    fn eight_rows_come_back_as_columns() {
        if !Isa::supported().contains(&Isa::Avx2) {
            return;
        }
        let values: Vec<f32> = (0..64).map(|v| v as f32).collect();
        let mut out = vec![0f32; 64];
        // SAFETY: AVX2 is supported (checked above).
        unsafe { transpose_avx2(&values, 8, &mut out) };
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, ((i % 8) * 8 + i / 8) as f32, "element {i}");
        }
    }

    #[test]
    fn rows_split_into_even_shares() {
        let shares = |rows, max| even_shares(rows, max).collect::<Vec<_>>();
        assert_eq!(shares(7, 6), [(0, 4), (4, 3)]);
        assert_eq!(
            shares(32, 6),
            [(0, 6), (6, 6), (12, 5), (17, 5), (22, 5), (27, 5)]
        );
        assert_eq!(shares(3, 3), [(0, 3)]);
        assert_eq!(shares(0, 3), []);
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
