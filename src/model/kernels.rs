//! f32 CPU kernels: dot products in a fixed order, whatever the batch shape.

use candle_core::Storage;

use super::error::Result;

/// The f32 data of a CPU storage.
pub(crate) fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(cpu) => Ok(cpu.as_slice::<f32>()?),
        _ => Err(candle_core::Error::Msg("CPU kernel given a non-CPU tensor".into()).into()),
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `scores[s] = scale * query · keys[s * stride..][..d]` for every slot `visible` leaves at 0
/// (all when `None`); other scores are set to -inf.
pub(crate) fn scaled_dots(
    query: &[f32],
    keys: &[f32],
    stride: usize,
    visible: Option<&[f32]>,
    scale: f32,
    scores: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { scaled_dots_avx2(query, keys, stride, visible, scale, scores) };
    }
    scaled_dots_with(query, keys, stride, visible, scale, scores, |a, b| {
        a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
    })
}

#[inline(always)]
fn scaled_dots_with(
    query: &[f32],
    keys: &[f32],
    stride: usize,
    visible: Option<&[f32]>,
    scale: f32,
    scores: &mut [f32],
    dot: impl Fn(&[f32], &[f32]) -> f32,
) {
    let d = query.len();
    for (slot, score) in scores.iter_mut().enumerate() {
        *score = if visible.is_none_or(|m| m[slot] == 0.0) {
            dot(query, &keys[slot * stride..][..d]) * scale
        } else {
            f32::NEG_INFINITY
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scaled_dots_avx2(
    query: &[f32],
    keys: &[f32],
    stride: usize,
    visible: Option<&[f32]>,
    scale: f32,
    scores: &mut [f32],
) {
    scaled_dots_with(query, keys, stride, visible, scale, scores, |a, b| unsafe {
        dot_avx2(a, b)
    })
}

/// One 8-lane FMA accumulator, a fixed reduction, then the scalar tail.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.as_ptr().add(i)),
            _mm256_loadu_ps(b.as_ptr().add(i)),
            acc,
        );
        i += 8;
    }
    let mut total = horizontal_sum(acc);
    while i < n {
        total += a[i] * b[i];
        i += 1;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn horizontal_sum(v: std::arch::x86_64::__m256) -> f32 {
    let mut l = [0f32; 8];
    std::arch::x86_64::_mm256_storeu_ps(l.as_mut_ptr(), v);
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// `dst[o * rows + r] = w[o] · x[r]` for each weight row `o` and input row `r`.
pub(crate) fn dot_rows(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { dot_rows_avx2(w, x, features, dst) };
    }
    let rows = x.len() / features;
    for (w_row, out) in w.chunks_exact(features).zip(dst.chunks_mut(rows)) {
        for (x_row, value) in x.chunks_exact(features).zip(out.iter_mut()) {
            *value = w_row.iter().zip(x_row).fold(0.0, |s, (a, b)| s + a * b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
    let rows = x.len() / features;
    let outputs = w.len() / features;
    let mut o = 0;
    while o < outputs {
        // Eight weight rows in flight when they meet one input row, four when they meet two.
        let o_block = if outputs - o >= 8 { 8 } else { 1 };
        let mut r = 0;
        while r < rows {
            let r_block = if rows - r >= 2 { 2 } else { 1 };
            let at = Tile {
                w,
                x,
                features,
                rows,
                o,
                r,
            };
            match (o_block, r_block) {
                (8, 2) => {
                    tile_avx2::<4, 2>(&at, dst);
                    tile_avx2::<4, 2>(&Tile { o: o + 4, ..at }, dst);
                }
                (8, _) => tile_avx2::<8, 1>(&at, dst),
                (_, 2) => tile_avx2::<1, 2>(&at, dst),
                _ => tile_avx2::<1, 1>(&at, dst),
            }
            r += r_block;
        }
        o += o_block;
    }
}

/// Where a tile of `O` weight rows by `R` input rows starts.
struct Tile<'a> {
    w: &'a [f32],
    x: &'a [f32],
    features: usize,
    rows: usize,
    o: usize,
    r: usize,
}

/// One accumulator per (weight row, input row): each dot product runs the same FMA sequence
/// whatever the tile shape, which keeps results independent of how many rows a call has.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_avx2<const O: usize, const R: usize>(t: &Tile, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let f = t.features;
    let w = t.w.as_ptr().add(t.o * f);
    let x = t.x.as_ptr().add(t.r * f);
    let mut acc = [[_mm256_setzero_ps(); R]; O];
    let mut i = 0;
    while i + 8 <= f {
        let xs: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(x.add(r * f + i)));
        for (oi, row) in acc.iter_mut().enumerate() {
            let wv = _mm256_loadu_ps(w.add(oi * f + i));
            for (ri, lane) in row.iter_mut().enumerate() {
                *lane = _mm256_fmadd_ps(wv, xs[ri], *lane);
            }
        }
        i += 8;
    }
    for (oi, row) in acc.iter().enumerate() {
        for (ri, lane) in row.iter().enumerate() {
            let mut total = horizontal_sum(*lane);
            for j in i..f {
                total += *w.add(oi * f + j) * *x.add(ri * f + j);
            }
            dst[(t.o + oi) * t.rows + t.r + ri] = total;
        }
    }
}
