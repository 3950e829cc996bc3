//! The weighted sum of attention, `out[j] += Σ_s w[s] · v[s][j]`, written against the vector
//! units: compiled for the crate's baseline (SSE2), with `out` stored and reloaded after every
//! slot, it took a quarter of a 32-node tree pass after a 1500-token prompt.
//!
//! Each element adds its products in order of slot, a multiply then an add (never fused), as
//! the plain loop does, and slots of weight 0 add nothing: every path gives the bits of that
//! loop, whatever the length of `out` and however many rows share a pass.
//!
//! On AVX-512 a head's rows go four at a time, so that each value is read once for four rows
//! and four rows' add chains interleave (one row alone waits on its adds): after a 1500-token
//! prompt (Pythia-410M shape, Intel Xeon, one process, passes alternated), a 32-node tree pass
//! took 188 and 199 ms against 195 and 208 ms row by row, 8 rows 83 and 85 against 85 and 86.

use super::Isa;

/// Features summed in registers at a time: four AVX-512 registers, eight AVX2 ones.
const BLOCK: usize = 64;

/// `out[j] += Σ_s weights[s] · values[s * stride + j]` for every `j`, in order of `s`,
/// skipping the slots whose weight is 0, for `rows` rows over the same values: row `r`'s
/// weights are `weights[r * slots..][..slots]` and its output `out[r * d..][..d]` (`slots` and
/// `d` the lengths divided by `rows`). Each row gets the bits it gets alone.
pub(crate) fn weighted_sums(
    weights: &[f32],
    values: &[f32],
    stride: usize,
    out: &mut [f32],
    rows: usize,
) {
    assert!(
        rows > 0 && weights.len().is_multiple_of(rows) && out.len().is_multiple_of(rows),
        "weighted_sums: {} weights and {} outputs are not {rows} rows",
        weights.len(),
        out.len()
    );
    let (slots, d) = (weights.len() / rows, out.len() / rows);
    let Some(last) = slots.checked_sub(1).filter(|_| d > 0) else {
        return;
    };
    assert!(
        stride >= d && last * stride + d <= values.len(),
        "weighted_sums: {slots} slots {stride} apart of {d} values need {} floats, got {}",
        last * stride + d,
        values.len()
    );
    let rows = Rows {
        weights,
        slots,
        out,
        d,
    };
    match Isa::detected() {
        // SAFETY: the detected path is one this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { weighted_sums_avx512(rows, values, stride) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { weighted_sums_avx2(rows, values, stride) },
        _ => weighted_sums_slice::<1>(rows, values, stride),
    }
}

/// Several rows' weights (`slots` each) and outputs (`d` each), row-major.
struct Rows<'a> {
    weights: &'a [f32],
    slots: usize,
    out: &'a mut [f32],
    d: usize,
}

/// Rows in fours: their 4 x 64 sums fill half the registers, and each value is loaded once
/// for the four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weighted_sums_avx512(rows: Rows, values: &[f32], stride: usize) {
    weighted_sums_slice::<4>(rows, values, stride)
}

/// Row by row: one row's 64 sums fill half the 16 registers already.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weighted_sums_avx2(rows: Rows, values: &[f32], stride: usize) {
    weighted_sums_slice::<1>(rows, values, stride)
}

/// Inlined into each path so that the compiler vectorises it for that path's registers: `R`
/// rows at a time, then the rest one by one. Where that takes several passes over the values,
/// they go a span of [`SPAN_SLOTS`] slots at a time, every pass over one span before the next.
#[inline(always)]
fn weighted_sums_slice<const R: usize>(rows: Rows, values: &[f32], stride: usize) {
    let Rows {
        weights,
        slots,
        out,
        d,
    } = rows;
    let rows = weights.len() / slots;
    let passes = rows / R + rows % R;
    let span = if passes > 1 { SPAN_SLOTS } else { slots };
    let ahead = |pass: usize| match pass {
        0 => Some(AHEAD_SLOTS),
        _ if pass == passes - 1 => Some(SPAN_SLOTS),
        _ => None,
    };
    for first in (0..slots).step_by(span) {
        let span = first..(first + span).min(slots);
        let mut weights = weights.chunks_exact(R * slots);
        let mut out = out.chunks_exact_mut(R * d);
        let mut pass = 0;
        for (weights, out) in weights.by_ref().zip(out.by_ref()) {
            rows_together::<R>(weights, span.clone(), values, stride, out, ahead(pass));
            pass += 1;
        }
        let rest = weights.remainder().chunks_exact(slots);
        for (weights, out) in rest.zip(out.into_remainder().chunks_exact_mut(d)) {
            rows_together::<1>(weights, span.clone(), values, stride, out, ahead(pass));
            pass += 1;
        }
    }
}

/// Slots per span where the rows take several passes over the values. The first pass reads a
/// span from memory (prefetching [`AHEAD_SLOTS`] on), the others from L1, and the last also
/// prefetches the next span into L1. Row groups in turn over all 1500 slots re-read each
/// head's values from L2 and overlapped their read from memory with less work. After a
/// 1500-token prompt (Pythia-410M shape, Intel Xeon, one process, passes alternated), 8 rows
/// took x0.957-0.959 as long, 16 rows x0.973-0.981, a 32-node tree x0.997-0.999 on AVX-512
/// (rows in fours), and on AVX2 (rows one by one) 4 rows x0.965, 8 x0.932, 16 x0.943, the
/// tree x0.956; 1 row (a single pass, no spans) and every pass after 48 tokens within 1%.
/// On AVX-512 spans of 16 and 24 slots did as well; on AVX2 48 and 64 did no better overall
/// (8 rows x0.926-0.966, the tree x0.962-0.967).
const SPAN_SLOTS: usize = 32;

/// `R` rows, each of `weights.len() / R` slots and `out.len() / R` features, over the slots
/// `span`, each slot prefetching the values `ahead` slots on (if any). A block of [`BLOCK`]
/// features has a constant length, so its sums stay in registers across the slots; the
/// features past the last whole block go slot by slot.
#[inline(always)]
fn rows_together<const R: usize>(
    weights: &[f32],
    span: std::ops::Range<usize>,
    values: &[f32],
    stride: usize,
    out: &mut [f32],
    ahead: Option<usize>,
) {
    let (slots, d) = (weights.len() / R, out.len() / R);
    let row_weights = |r: usize| &weights[r * slots..][..slots];
    for b in 0..d / BLOCK {
        let at = |r: usize| r * d + b * BLOCK;
        let mut sums: [[f32; BLOCK]; R] =
            std::array::from_fn(|r| out[at(r)..][..BLOCK].try_into().expect("a whole block"));
        for slot in span.clone() {
            let start = slot * stride + b * BLOCK;
            if let Some(ahead) = ahead {
                prefetch_block(values, start + ahead * stride);
            }
            let v: &[f32; BLOCK] = values[start..start + BLOCK].try_into().expect("a block");
            for (r, sums) in sums.iter_mut().enumerate() {
                let w = row_weights(r)[slot];
                if w == 0.0 {
                    continue;
                }
                for (sum, v) in sums.iter_mut().zip(v) {
                    *sum += w * v;
                }
            }
        }
        for (r, sums) in sums.iter().enumerate() {
            out[at(r)..][..BLOCK].copy_from_slice(sums);
        }
    }
    let first = d / BLOCK * BLOCK;
    if first == d {
        // Nothing past the blocks: a loop over every slot's weight for no features cost 3-5%
        // of a 4- to 32-row pass after a 1500-token prompt.
        return;
    }
    for (r, out) in out.chunks_exact_mut(d).enumerate() {
        let rest = &mut out[first..];
        for slot in span.clone() {
            let w = row_weights(r)[slot];
            if w == 0.0 {
                continue;
            }
            let start = slot * stride + first;
            let v = &values[start..start + rest.len()];
            rest.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
        }
    }
}

/// Slots ahead of the one being summed whose block of values [`prefetch_block`] fetches.
/// After a 1500-token prompt (Pythia-410M shape, Intel Xeon, one process, passes alternated),
/// `perf` put about half of this kernel's samples on the first row's loads of each slot's
/// values, from memory; fetching 8 slots ahead, 4-32 rows took x0.976-0.983 as long (16 slots
/// x0.981-0.997, 32 and 64 no better), 1 row and every pass after 48 tokens within 1%.
const AHEAD_SLOTS: usize = 8;

/// Prefetches into L1 the [`BLOCK`] values at `values[at..]`, if any (a prefetch past the end
/// reads nothing).
#[inline(always)]
fn prefetch_block(values: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..BLOCK).step_by(16) {
        let address = values.as_ptr().wrapping_add(at + line);
        // SAFETY: a prefetch reads nothing and faults on no address; SSE is x86_64's baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop the kernel replaces, element by element.
    fn plain(weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        for (slot, &w) in weights.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let value = &values[slot * stride..][..out.len()];
            out.iter_mut().zip(value).for_each(|(o, v)| *o += w * v);
        }
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every path, any number of rows together, against the plain loop row by row.
    #[test]
    fn every_path_gives_each_row_the_bits_of_the_plain_loop() {
        // One span and a part of one; three and a part (the spans of several passes).
        for slots in [SPAN_SLOTS + 5, 3 * SPAN_SLOTS + 4] {
            every_path_on(slots);
        }
    }

    fn every_path_on(slots: usize) {
        for (d, stride) in [(64, 64), (64, 80), (128, 128), (80, 96), (16, 16), (5, 7)] {
            let values = pseudo_random(slots * stride, 4);
            for rows in 1..=9 {
                let mut weights: Vec<f32> = pseudo_random(rows * slots, 3 + rows as u32)
                    .iter()
                    .map(|w| w.abs())
                    .collect();
                // Masked slots, different in each row.
                for r in 0..rows {
                    weights[r * slots + (4 + 3 * r) % slots] = 0.0;
                    weights[r * slots + 20] = 0.0;
                }
                let start = pseudo_random(rows * d, 5);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let mut expected = start.clone();
                for (w, out) in weights.chunks(slots).zip(expected.chunks_mut(d)) {
                    plain(w, &values, stride, out);
                }
                for isa in Isa::supported() {
                    let mut out = start.clone();
                    let together = Rows {
                        weights: &weights,
                        slots,
                        out: &mut out,
                        d,
                    };
                    match isa {
                        // SAFETY: `Isa::supported` lists only paths this CPU runs.
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 => unsafe { weighted_sums_avx512(together, &values, stride) },
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2 => unsafe { weighted_sums_avx2(together, &values, stride) },
                        _ => weighted_sums_slice::<1>(together, &values, stride),
                    }
                    let label = format!("{isa:?}, d {d}, stride {stride}, {rows} x {slots}");
                    assert_eq!(bits(&out), bits(&expected), "{label}");
                }
                // The four-row grouping on the portable path too.
                let mut out = start.clone();
                let together = Rows {
                    weights: &weights,
                    slots,
                    out: &mut out,
                    d,
                };
                weighted_sums_slice::<4>(together, &values, stride);
                assert_eq!(
                    bits(&out),
                    bits(&expected),
                    "fours, d {d}, {rows} x {slots}"
                );
            }
        }
    }

    #[test]
    fn zero_weights_leave_a_negative_zero_alone() {
        let mut out = vec![-0.0f32; 70];
        weighted_sums(&[0.0, 0.0], &[1.0; 140], 70, &mut out, 1);
        assert!(out.iter().all(|v| v.to_bits() == (-0.0f32).to_bits()));
    }

    #[test]
    #[should_panic(expected = "weighted_sums: 3 weights and 128 outputs are not 2 rows")]
    fn weights_that_are_not_whole_rows_are_refused() {
        weighted_sums(&[1.0; 3], &[1.0; 256], 64, &mut [0.0; 128], 2);
    }

    #[test]
    #[should_panic(expected = "weighted_sums: 2 slots 64 apart of 64 values need 128 floats")]
    fn too_few_values_are_refused() {
        weighted_sums(&[1.0, 1.0], &[1.0; 100], 64, &mut [0.0; 64], 1);
    }
}
