//! f32 CPU kernels: dot products in one fixed order, whatever the batch shape and the CPU.
//!
//! Every dot product here is the *canonical dot*: lane `j` of 16 accumulates `a[i] * b[i]` for
//! `i ≡ j (mod 16)` by fused multiply-add in order of `i`, the lanes fold in a fixed tree, and
//! the tail past the last whole 16 adds on by FMA in order. AVX-512 holds the 16 lanes in one
//! register, AVX2 in two, the portable path in an array: all three give the same bits, so a
//! token's numbers depend neither on how many rows share a pass nor on which path ran.

use candle_core::Storage;

use super::error::Result;

/// Lanes of the canonical dot.
const LANES: usize = 16;

/// The f32 data of a CPU storage.
pub(crate) fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(cpu) => Ok(cpu.as_slice::<f32>()?),
        _ => Err(candle_core::Error::Msg("CPU kernel given a non-CPU tensor".into()).into()),
    }
}

/// Which instruction set the kernels use, chosen once per process from what the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The path the kernels take: the widest this CPU runs, or a narrower one named by
    /// `DYNATREE_CPU_KERNELS` (`avx512`, `avx2`, `portable`) to measure it; every path gives
    /// the same bits, so the choice changes speed only.
    pub fn detected() -> Isa {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let supported = Isa::supported();
            let asked = std::env::var("DYNATREE_CPU_KERNELS").ok();
            let named = asked.as_deref().map(|name| match name {
                "avx512" => Some(Isa::Avx512),
                "avx2" => Some(Isa::Avx2),
                "portable" => Some(Isa::Portable),
                _ => None,
            });
            match named {
                None => supported[0],
                Some(Some(isa)) if supported.contains(&isa) => isa,
                Some(_) => {
                    eprintln!(
                        "note: DYNATREE_CPU_KERNELS={} is not a path this CPU runs ({supported:?}); using {:?}",
                        asked.unwrap_or_default(),
                        supported[0]
                    );
                    supported[0]
                }
            }
        })
    }

    /// Every path this CPU can run, widest first.
    pub fn supported() -> Vec<Isa> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") {
                paths.push(Isa::Avx512);
            }
            if has!("avx2") && has!("fma") {
                paths.push(Isa::Avx2);
            }
        }
        paths.push(Isa::Portable);
        paths
    }
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
    let d = query.len();
    for (slot, score) in scores.iter_mut().enumerate() {
        *score = if visible.is_none_or(|m| m[slot] == 0.0) {
            dot(query, &keys[slot * stride..][..d]) * scale
        } else {
            f32::NEG_INFINITY
        };
    }
}

/// The canonical dot of two slices of equal length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0f32];
    dot_rows_with(Isa::detected(), a, b, a.len(), &mut out);
    out[0]
}

/// `dst[o * rows + r] = w[o] · x[r]` for each weight row `o` and input row `r`.
pub(crate) fn dot_rows(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
    dot_rows_with(Isa::detected(), w, x, features, dst)
}

/// [`dot_rows`] on a given path (which the CPU must support).
pub(crate) fn dot_rows_with(isa: Isa, w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
    let rows = x.len() / features;
    let outputs = w.len() / features;
    assert!(dst.len() >= outputs * rows, "dot_rows: output too short");
    match isa {
        // SAFETY: callers pass a path from `Isa::supported`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::dot_rows_avx512(w, x, features, dst) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dot_rows_avx2(w, x, features, dst) },
        _ => portable_dot_rows(w, x, features, dst),
    }
}

/// Folds the 16 lanes: (j, j+8), then (j, j+4), (j, j+2), (0, 1).
#[inline(always)]
fn fold_lanes(l: &[f32; LANES]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|j| l[j] + l[j + 8]);
    let q: [f32; 4] = std::array::from_fn(|j| h[j] + h[j + 4]);
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// The tail past the last whole 16, then the folded lanes: shared by every path.
#[inline(always)]
fn finish(lanes: &[f32; LANES], a_tail: &[f32], b_tail: &[f32]) -> f32 {
    a_tail
        .iter()
        .zip(b_tail)
        .fold(fold_lanes(lanes), |s, (x, y)| x.mul_add(*y, s))
}

fn portable_dot_rows(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
    let rows = x.len() / features;
    let whole = features / LANES * LANES;
    for (w_row, out) in w.chunks_exact(features).zip(dst.chunks_mut(rows)) {
        for (x_row, value) in x.chunks_exact(features).zip(out.iter_mut()) {
            let mut lanes = [0f32; LANES];
            for (wc, xc) in w_row[..whole]
                .chunks_exact(LANES)
                .zip(x_row[..whole].chunks_exact(LANES))
            {
                for j in 0..LANES {
                    lanes[j] = wc[j].mul_add(xc[j], lanes[j]);
                }
            }
            *value = finish(&lanes, &w_row[whole..], &x_row[whole..]);
        }
    }
}

/// How a product of `outputs` weight rows by `rows` input rows is cut into register tiles of
/// `O` weight rows by `R` input rows: `O * R` accumulators plus `R` inputs and one weight
/// register fit the register file, and each weight tile is read from memory once, then meets
/// every input row while it is still in L1.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{finish, LANES};
    use std::arch::x86_64::*;

    /// Where a tile of weight rows `o..` by input rows `r..` starts.
    #[derive(Clone, Copy)]
    struct Tile<'a> {
        w: &'a [f32],
        x: &'a [f32],
        features: usize,
        rows: usize,
        o: usize,
        r: usize,
    }

    /// Runs `tile::<O, R>` over the whole product, input rows in blocks of up to 4: with 8 rows
    /// per tile the inputs of a wide layer spill out of L1 and every tile re-reads them from L2.
    macro_rules! sweep {
        ($tile:ident, $w:expr, $x:expr, $features:expr, $dst:expr) => {{
            let (w, x, features, dst) = ($w, $x, $features, $dst);
            let rows = x.len() / features;
            let outputs = w.len() / features;
            let mut o = 0;
            while o < outputs {
                let wide = outputs - o >= 8;
                let mut r = 0;
                while r < rows {
                    let block = (rows - r).min(4);
                    let t = Tile {
                        w,
                        x,
                        features,
                        rows,
                        o,
                        r,
                    };
                    // Eight weight rows per step, as tiles of `O` rows; a tile's rows stream
                    // from memory side by side (8 streams for one input row keep enough loads
                    // in flight to saturate memory on their own).
                    macro_rules! tiles {
                        ($o:literal, $r:literal) => {
                            for k in 0..8 / $o {
                                // SAFETY: the caller checked the CPU has the tile's features.
                                unsafe { $tile::<$o, $r>(Tile { o: o + $o * k, ..t }, dst) }
                            }
                        };
                    }
                    macro_rules! narrow {
                        ($r:literal) => {
                            // SAFETY: as above.
                            unsafe { $tile::<1, $r>(t, dst) }
                        };
                    }
                    match (wide, block) {
                        (true, 1) => tiles!(8, 1),
                        (true, 2) => tiles!(4, 2),
                        (true, 3) => tiles!(4, 3),
                        (true, _) => tiles!(4, 4),
                        (false, 1) => narrow!(1),
                        (false, 2) => narrow!(2),
                        (false, 3) => narrow!(3),
                        (false, _) => narrow!(4),
                    }
                    r += block;
                }
                o += if wide { 8 } else { 1 };
            }
        }};
    }

    /// Writes one finished tile.
    #[inline(always)]
    fn store<const O: usize, const R: usize>(
        t: Tile,
        lanes: impl Fn(usize, usize) -> [f32; LANES],
        dst: &mut [f32],
    ) {
        let f = t.features;
        let whole = f / LANES * LANES;
        for oi in 0..O {
            let w_row = &t.w[(t.o + oi) * f..][..f];
            for ri in 0..R {
                let x_row = &t.x[(t.r + ri) * f..][..f];
                dst[(t.o + oi) * t.rows + t.r + ri] =
                    finish(&lanes(oi, ri), &w_row[whole..], &x_row[whole..]);
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    pub(super) unsafe fn dot_rows_avx512(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
        sweep!(tile_avx512, w, x, features, dst)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    pub(super) unsafe fn dot_rows_avx2(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
        sweep!(tile_avx2, w, x, features, dst)
    }

    /// Written against memory bandwidth: one 16-lane register per (weight row, input row).
    #[target_feature(enable = "avx512f")]
    fn tile_avx512<const O: usize, const R: usize>(t: Tile, dst: &mut [f32]) {
        let f = t.features;
        let whole = f / LANES * LANES;
        // SAFETY: every load reads `LANES` floats below `whole` of a row inside `w` or `x`.
        unsafe {
            let w = t.w.as_ptr().add(t.o * f);
            let x = t.x.as_ptr().add(t.r * f);
            let mut acc = [[_mm512_setzero_ps(); R]; O];
            let mut i = 0;
            while i < whole {
                let xs: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(x.add(r * f + i)));
                for (oi, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(w.add(oi * f + i));
                    for (lane, xv) in row.iter_mut().zip(&xs) {
                        *lane = _mm512_fmadd_ps(wv, *xv, *lane);
                    }
                }
                i += LANES;
            }
            let lanes = |oi: usize, ri: usize| {
                let mut l = [0f32; LANES];
                _mm512_storeu_ps(l.as_mut_ptr(), acc[oi][ri]);
                l
            };
            store::<O, R>(t, lanes, dst);
        }
    }

    /// The same as [`tile_avx512`] with each 16-lane accumulator held as two 8-lane halves.
    #[target_feature(enable = "avx2,fma")]
    fn tile_avx2<const O: usize, const R: usize>(t: Tile, dst: &mut [f32]) {
        let f = t.features;
        let whole = f / LANES * LANES;
        // SAFETY: as in `tile_avx512`.
        unsafe {
            let w = t.w.as_ptr().add(t.o * f);
            let x = t.x.as_ptr().add(t.r * f);
            let mut acc = [[[_mm256_setzero_ps(); 2]; R]; O];
            let mut i = 0;
            while i < whole {
                for half in 0..2 {
                    let at = i + 8 * half;
                    let xs: [__m256; R] =
                        std::array::from_fn(|r| _mm256_loadu_ps(x.add(r * f + at)));
                    for (oi, row) in acc.iter_mut().enumerate() {
                        let wv = _mm256_loadu_ps(w.add(oi * f + at));
                        for (lane, xv) in row.iter_mut().zip(&xs) {
                            lane[half] = _mm256_fmadd_ps(wv, *xv, lane[half]);
                        }
                    }
                }
                i += LANES;
            }
            let lanes = |oi: usize, ri: usize| {
                let mut l = [0f32; LANES];
                _mm256_storeu_ps(l.as_mut_ptr(), acc[oi][ri][0]);
                _mm256_storeu_ps(l.as_mut_ptr().add(8), acc[oi][ri][1]);
                l
            };
            store::<O, R>(t, lanes, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_path_gives_the_same_bits_for_every_shape() {
        for features in [1, 15, 16, 17, 48, 200, 256] {
            for outputs in [1, 7, 8, 9, 17] {
                for rows in [1, 2, 3, 4, 5, 8, 9, 17, 33] {
                    let w = pseudo_random(outputs * features, 3);
                    let x = pseudo_random(rows * features, 5);
                    let mut reference = vec![0f32; outputs * rows];
                    dot_rows_with(Isa::Portable, &w, &x, features, &mut reference);
                    for isa in Isa::supported() {
                        let mut got = vec![0f32; outputs * rows];
                        dot_rows_with(isa, &w, &x, features, &mut got);
                        let same = got
                            .iter()
                            .zip(&reference)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa:?}: {outputs}x{features} by {rows} rows");
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_or_in_a_block_on_every_path() {
        let (features, outputs) = (200, 19);
        let w = pseudo_random(outputs * features, 7);
        let x = pseudo_random(33 * features, 9);
        for isa in Isa::supported() {
            for rows in 1..=33 {
                let mut block = vec![0f32; outputs * rows];
                dot_rows_with(isa, &w, &x[..rows * features], features, &mut block);
                for r in 0..rows {
                    let mut alone = vec![0f32; outputs];
                    dot_rows_with(
                        isa,
                        &w,
                        &x[r * features..][..features],
                        features,
                        &mut alone,
                    );
                    let together: Vec<f32> = (0..outputs).map(|o| block[o * rows + r]).collect();
                    assert_eq!(alone, together, "{isa:?}: row {r} of {rows}");
                }
            }
        }
    }

    #[test]
    fn the_canonical_dot_is_close_to_the_exact_one() {
        let a = pseudo_random(1000, 11);
        let b = pseudo_random(1000, 13);
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - exact).abs() < 1e-3);
    }
}
