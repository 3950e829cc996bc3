//! The unnormalised softmax of one attention row, written against the vector units. With
//! libm's scalar `expf` and a serial sum (one add chain over 1500 slots per row and head), a
//! 32-node tree pass after a 1500-token prompt (Pythia-410M shape, Intel Xeon, separate
//! processes alternated) took 243-251 ms against 188-200 ms now; 8 rows 94 against 89 ms.
//!
//! `exp` is Cephes' single-precision one (Cody-Waite reduction by ln 2, a degree-5 polynomial,
//! the power of two put in the exponent bits), within 2e-7 relative of the exact value
//! (tested); results under 2^-126 are 0, where softmax weights that small add nothing to a row
//! whose largest weight is 1. The sum keeps 16 lanes, slot `s` in lane `s % 16`, folded as the
//! dot products' lanes are. Only multiply, fused multiply-add, add, max and integer operations
//! on the bits: each rounds exactly as IEEE says, so the vectorised paths and the portable one
//! give the same bits, and a row's weights do not depend on the rows beside it.

use super::{fold_lanes, Isa, LANES};

/// `x·log2(e) + MAGIC` rounds `x·log2(e)` to the nearest integer, held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
/// ln 2 in two parts, the first exact in few bits, so that `x - n·ln 2` loses nothing.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' minimax coefficients of `(e^r - 1 - r) / r²` on `|r| ≤ ln 2 / 2`, highest first.
const POLYNOMIAL: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// Below this `e^x` is under 2^-126 and is taken as 0.
const SMALLEST: f32 = -87.336_54;

/// Masks and scales a row's dots (`visible` 0 for a slot it sees, anything else for one it
/// does not; `None`: all seen), then `scores[s] ← e^(scores[s] - max)`. Returns the sum of the
/// new scores.
pub(crate) fn softmax_unnormalised(scores: &mut [f32], visible: Option<&[f32]>, scale: f32) -> f32 {
    if let Some(visible) = visible {
        assert_eq!(
            visible.len(),
            scores.len(),
            "softmax: one mask value per slot"
        );
    }
    match Isa::detected() {
        // SAFETY: the detected path is one this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { softmax_avx512(scores, visible, scale) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { softmax_avx2(scores, visible, scale) },
        _ => softmax_slice(scores, visible, scale),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn softmax_avx512(scores: &mut [f32], visible: Option<&[f32]>, scale: f32) -> f32 {
    softmax_slice(scores, visible, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(scores: &mut [f32], visible: Option<&[f32]>, scale: f32) -> f32 {
    softmax_slice(scores, visible, scale)
}

/// Inlined into each path so that the compiler vectorises it for that path's registers.
#[inline(always)]
fn softmax_slice(scores: &mut [f32], visible: Option<&[f32]>, scale: f32) -> f32 {
    match visible {
        None => scores.iter_mut().for_each(|s| *s *= scale),
        Some(visible) => scores.iter_mut().zip(visible).for_each(|(s, &m)| {
            *s = if m == 0.0 {
                *s * scale
            } else {
                f32::NEG_INFINITY
            };
        }),
    }
    let max = lane_wise(scores, f32::NEG_INFINITY, |lane, s| lane.max(s))
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0f32; LANES];
    let mut chunks = scores.chunks_exact_mut(LANES);
    for chunk in chunks.by_ref() {
        for (sum, s) in sums.iter_mut().zip(chunk) {
            *s = exp(*s - max);
            *sum += *s;
        }
    }
    for (sum, s) in sums.iter_mut().zip(chunks.into_remainder()) {
        *s = exp(*s - max);
        *sum += *s;
    }
    fold_lanes(&sums)
}

/// `lanes[s % 16] = f(lanes[s % 16], values[s])` over the slice, lanes starting at `start`.
#[inline(always)]
fn lane_wise(values: &[f32], start: f32, f: impl Fn(f32, f32) -> f32) -> [f32; LANES] {
    let mut lanes = [start; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in chunks.by_ref() {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane = f(*lane, v);
    }
    lanes
}

/// `e^x` for `x ≤ 0` (larger `x` overflow the exponent bits); 0 below [`SMALLEST`] and for
/// −∞.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let clamped = x.max(SMALLEST);
    let shifted = clamped.mul_add(std::f32::consts::LOG2_E, MAGIC);
    let n = shifted - MAGIC;
    let r = n.mul_add(-LN2_HI, clamped);
    let r = n.mul_add(-LN2_LO, r);
    let p = POLYNOMIAL[1..]
        .iter()
        .fold(POLYNOMIAL[0], |acc, &c| acc.mul_add(r, c));
    let e_r = p.mul_add(r * r, r) + 1.0;
    let power = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let two_to_n = f32::from_bits(((power + 127) as u32) << 23);
    if x < SMALLEST {
        0.0
    } else {
        e_r * two_to_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ten_millionths_of_the_exact_value() {
        let mut worst = (0f64, 0f32);
        for i in 0..=2_000_000 {
            let x = -(i as f32) * 4.366e-5;
            let exact = (x as f64).exp();
            let error = (exp(x) as f64 - exact).abs() / exact;
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(
            worst.0 < 2e-7,
            "exp({}) off by {} relative",
            worst.1,
            worst.0
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert!(exp(SMALLEST) >= f32::MIN_POSITIVE);
    }

    #[test]
    #[should_panic(expected = "softmax: one mask value per slot")]
    fn a_mask_of_another_length_is_refused() {
        softmax_unnormalised(&mut [0.0; 4], Some(&[0.0; 3]), 1.0);
    }

    fn scores(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
            .collect()
    }

    /// Every path against the portable one, each slot against libm's softmax.
    #[test]
    fn every_path_gives_the_same_bits_close_to_libm() {
        for n in [1, 7, 16, 17, 64, 100, 1500] {
            let mask: Vec<f32> = (0..n)
                .map(|s| if s % 5 == 3 { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            for visible in [None, Some(&mask[..])] {
                let mut portable = scores(n);
                let portable_sum = softmax_slice(&mut portable, visible, 0.125);
                for isa in Isa::supported() {
                    let mut other = scores(n);
                    let other_sum = match isa {
                        // SAFETY: `Isa::supported` lists only paths this CPU runs.
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 => unsafe { softmax_avx512(&mut other, visible, 0.125) },
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2 => unsafe { softmax_avx2(&mut other, visible, 0.125) },
                        _ => softmax_unnormalised(&mut other, visible, 0.125),
                    };
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&portable), bits(&other), "{isa:?}, {n} slots");
                    assert_eq!(portable_sum.to_bits(), other_sum.to_bits(), "{isa:?}, {n}");
                }

                let seen = |s: usize| visible.is_none_or(|m| m[s] == 0.0);
                let scaled: Vec<f32> = scores(n).iter().map(|s| s * 0.125).collect();
                let max = (0..n)
                    .filter(|&s| seen(s))
                    .map(|s| scaled[s])
                    .fold(f32::MIN, f32::max);
                let mut libm_sum = 0f64;
                for (s, weight) in portable.iter().enumerate() {
                    if !seen(s) {
                        assert_eq!(weight.to_bits(), 0, "slot {s} of {n} is masked");
                        continue;
                    }
                    let libm = (scaled[s] - max).exp();
                    assert!((weight - libm).abs() <= 2e-7 * libm, "slot {s} of {n}");
                    libm_sum += libm as f64;
                }
                assert!(
                    (portable_sum as f64 - libm_sum).abs() <= 1e-6 * libm_sum,
                    "{n} slots"
                );
            }
        }
    }
}
