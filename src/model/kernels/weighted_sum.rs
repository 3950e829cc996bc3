//! The weighted sum of attention, `out[j] += Σ_s w[s] · v[s][j]`, written against the vector
//! units: compiled for the crate's baseline (SSE2), with `out` stored and reloaded after every
//! slot, it took a quarter of a 32-node tree pass after a 1500-token prompt.
//!
//! Each element adds its products in order of slot, a multiply then an add (never fused), as
//! the plain loop does, and slots of weight 0 add nothing: every path gives the bits of that
//! loop, whatever the length of `out` and however many rows share a pass.

use super::Isa;

/// Features summed in registers at a time: four AVX-512 registers, eight AVX2 ones.
const BLOCK: usize = 64;

/// `out[j] += Σ_s weights[s] · values[s * stride + j]` for every `j`, in order of `s`,
/// skipping the slots whose weight is 0.
pub(crate) fn weighted_sum(weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    if let Some(last) = weights.len().checked_sub(1) {
        assert!(
            stride >= out.len() && last * stride + out.len() <= values.len(),
            "weighted_sum: {} slots {stride} apart of {} values need {} floats, got {}",
            weights.len(),
            out.len(),
            last * stride + out.len(),
            values.len()
        );
    }
    match Isa::detected() {
        // SAFETY: the detected path is one this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { weighted_sum_avx512(weights, values, stride, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { weighted_sum_avx2(weights, values, stride, out) },
        _ => weighted_sum_slice(weights, values, stride, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn weighted_sum_avx512(weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    weighted_sum_slice(weights, values, stride, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn weighted_sum_avx2(weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    weighted_sum_slice(weights, values, stride, out)
}

/// Inlined into each path so that the compiler vectorises it for that path's registers. A
/// block of [`BLOCK`] features has a constant length, so its sums stay in registers across
/// the slots; the features past the last whole block go slot by slot.
#[inline(always)]
fn weighted_sum_slice(weights: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    let first = out.len() / BLOCK * BLOCK;
    let mut blocks = out.chunks_exact_mut(BLOCK);
    for (b, block) in blocks.by_ref().enumerate() {
        let mut sums: [f32; BLOCK] = (&*block).try_into().expect("a whole block");
        for (slot, &w) in weights.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let start = slot * stride + b * BLOCK;
            let v: &[f32; BLOCK] = values[start..start + BLOCK].try_into().expect("a block");
            for (sum, v) in sums.iter_mut().zip(v) {
                *sum += w * v;
            }
        }
        block.copy_from_slice(&sums);
    }
    let rest = blocks.into_remainder();
    for (slot, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        let start = slot * stride + first;
        let v = &values[start..start + rest.len()];
        rest.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
    }
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

    #[test]
    fn every_path_gives_the_bits_of_the_plain_loop() {
        let slots = 37;
        for (d, stride) in [(64, 64), (64, 80), (128, 128), (80, 96), (16, 16), (5, 7)] {
            let mut weights: Vec<f32> = pseudo_random(slots, 3).iter().map(|w| w.abs()).collect();
            // Masked slots.
            weights[4] = 0.0;
            weights[20] = 0.0;
            let values = pseudo_random(slots * stride, 4);
            let start = pseudo_random(d, 5);
            let mut expected = start.clone();
            plain(&weights, &values, stride, &mut expected);
            for isa in Isa::supported() {
                let mut out = start.clone();
                match isa {
                    // SAFETY: `Isa::supported` lists only paths this CPU runs.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => unsafe {
                        weighted_sum_avx512(&weights, &values, stride, &mut out)
                    },
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { weighted_sum_avx2(&weights, &values, stride, &mut out) },
                    _ => weighted_sum_slice(&weights, &values, stride, &mut out),
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&out),
                    bits(&expected),
                    "{isa:?}, d {d}, stride {stride}"
                );
            }
        }
    }

    #[test]
    fn zero_weights_leave_a_negative_zero_alone() {
        let mut out = vec![-0.0f32; 70];
        weighted_sum(&[0.0, 0.0], &[1.0; 140], 70, &mut out);
        assert!(out.iter().all(|v| v.to_bits() == (-0.0f32).to_bits()));
    }

    #[test]
    #[should_panic(expected = "weighted_sum")]
    fn too_few_values_are_refused() {
        weighted_sum(&[1.0, 1.0], &[1.0; 100], 64, &mut [0.0; 64]);
    }
}
