//! f32 CPU kernels: dot products in one fixed order, whatever the batch shape and the CPU.
//!
//! Every dot product here is the *canonical dot*: lane `j` of 16 accumulates `a[i] * b[i]` for
//! `i ≡ j (mod 16)` by fused multiply-add in order of `i`, the lanes fold in a fixed tree, and
//! the tail past the last whole 16 adds on by FMA in order. AVX-512 holds the 16 lanes in one
//! register, AVX2 in two, the portable path in an array: all three give the same bits, so a
//! token's numbers depend neither on how many rows share a pass nor on which path ran.

use candle_core::Storage;

use super::error::Result;

/// Runs `task(items, dst)` over the items whose outputs are `dst`'s consecutive chunks of
/// `per_item` values (the last may be shorter), on the compute team when the work
/// (multiply-adds) is worth a second thread.
pub(crate) fn parallel_chunks(
    dst: &mut [f32],
    per_item: usize,
    work: usize,
    task: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let items = dst.len().div_ceil(per_item);
    let team = super::team::team();
    if work < PARALLEL_MIN_WORK || team.threads() == 1 || items < 2 {
        task(0..items, dst);
        return;
    }
    let base = SharedSlice(dst.as_mut_ptr(), dst.len());
    team.for_chunks(items, |range| {
        let start = range.start * per_item;
        let len = (range.end * per_item).min(base.1) - start;
        // SAFETY: the team hands out disjoint item ranges, so the chunks never overlap, and
        // `for_chunks` returns only when every range is done.
        let chunk = unsafe { base.chunk(start, len) };
        task(range, chunk)
    });
}

/// Below this many multiply-adds a second thread costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// A slice shared between pool workers that each write a disjoint part of it.
struct SharedSlice(*mut f32, usize);

// SAFETY: only disjoint chunks are ever materialised (see `parallel_chunks`).
unsafe impl Sync for SharedSlice {}

impl SharedSlice {
    /// # Safety
    /// No other live reference may overlap `start..start + len`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn chunk(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.1, "chunk past the end");
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// Lanes of the canonical dot.
const LANES: usize = 16;

/// Weight rows the products sweep together (a multiple of every register tile's height): a
/// caller that splits a product by output rows splits it at multiples of this, or the pieces
/// end in narrow one-row tiles.
pub(crate) const ROW_GROUP: usize = 24;

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
    if stride == d {
        // The slots are the rows of one matrix: one product, whose tiles read several keys at once.
        dot_rows(&keys[..scores.len() * d], query, d, scores);
    } else {
        for (slot, score) in scores.iter_mut().enumerate() {
            *score = dot(query, &keys[slot * stride..][..d]);
        }
    }
    for (slot, score) in scores.iter_mut().enumerate() {
        *score = if visible.is_none_or(|m| m[slot] == 0.0) {
            *score * scale
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

/// The sum of `data`, read as fast as this CPU reads memory, each compute thread reading one
/// contiguous share: what a memory-bandwidth measurement streams (`make bench`'s read
/// ceiling). Its rounding order is its own.
pub fn read_sum(data: &[f32]) -> f32 {
    let team = super::team::team();
    let share = data.len().div_ceil(team.threads()).max(1);
    let sums: Vec<std::sync::atomic::AtomicU32> =
        (0..team.threads()).map(|_| Default::default()).collect();
    team.run(&|thread| {
        let part = data.chunks(share).nth(thread).unwrap_or(&[]);
        let sum = read_sum_one_thread(part);
        sums[thread].store(sum.to_bits(), std::sync::atomic::Ordering::Relaxed);
    });
    sums.iter()
        .map(|s| f32::from_bits(s.load(std::sync::atomic::Ordering::Relaxed)))
        .sum()
}

fn read_sum_one_thread(data: &[f32]) -> f32 {
    match Isa::detected() {
        // SAFETY: the detected path is one this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::read_sum_avx512(data) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::read_sum_avx2(data) },
        _ => data.iter().sum(),
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

/// How a product of `outputs` weight rows by `rows` input rows is cut into register tiles.
///
/// Weight rows go in groups of [`GROUP`]; input rows in blocks of up to 8; each (group, block)
/// is swept by tiles of `O` weight rows by the block's `R` input rows, whose `O * R` 16-lane
/// accumulators stay in registers. With one input row the product is a read of the weights
/// (memory-bound): 8 rows at a time stream side by side, enough loads in flight to saturate
/// memory. With several, it is multiply-adds (compute-bound): features go in chunks of [`CHUNK`],
/// so that a chunk of the group's weights and of every input row stays in L1 while all the
/// blocks sweep it, each weight byte comes from memory once, and the accumulators are parked in
/// a small buffer between chunks. Parking is an exact store and load, so lane `j` of every dot
/// still adds its products in order of feature: the bits do not depend on the cut.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{finish, LANES, ROW_GROUP as GROUP};
    use std::arch::x86_64::*;

    /// Features per chunk when several input rows share the product.
    const CHUNK: usize = 256;

    /// One tile's place: weight rows `o..o + O` of `w`, input rows `r..r + R` of `x`, and the
    /// accumulators of group row `gi` and input row `r` at `partial[gi * rows + r]`.
    #[derive(Clone, Copy)]
    struct Tile<'a> {
        w: &'a [f32],
        x: &'a [f32],
        features: usize,
        rows: usize,
        o: usize,
        r: usize,
        /// `o` minus the group's first row.
        gi: usize,
        steps: (usize, usize),
        first: bool,
    }

    type Partial = [[f32; LANES]];

    /// Sweeps the product with `$tile::<O, R>`; `$shape` maps a block of R input rows to the
    /// register tile height O for this instruction set.
    macro_rules! sweep {
        ($tile:ident, $shape:ident, $max_block:expr, $w:expr, $x:expr, $features:expr, $dst:expr) => {{
            let (w, x, features, dst): (&[f32], &[f32], usize, &mut [f32]) =
                ($w, $x, $features, $dst);
            let rows = x.len() / features;
            let outputs = w.len() / features;
            let steps = features / LANES;
            let chunk = if rows == 1 {
                steps.max(1)
            } else {
                CHUNK / LANES
            };
            super::with_partial(GROUP * rows, |partial| {
                let mut g = 0;
                while g < outputs {
                    let height = (outputs - g).min(GROUP);
                    let mut s0 = 0;
                    loop {
                        let s1 = (s0 + chunk).min(steps);
                        let mut r = 0;
                        while r < rows {
                            let block = (rows - r).min($max_block);
                            let t = Tile {
                                w,
                                x,
                                features,
                                rows,
                                o: g,
                                r,
                                gi: 0,
                                steps: (s0, s1),
                                first: s0 == 0,
                            };
                            macro_rules! tiles {
                                ($r:literal) => {{
                                    const O: usize = $shape($r);
                                    let mut gi = 0;
                                    while gi + O <= height {
                                        // SAFETY: the caller checked the CPU has the features.
                                        unsafe {
                                            $tile::<O, $r>(Tile { o: g + gi, gi, ..t }, partial)
                                        };
                                        gi += O;
                                    }
                                    while gi < height {
                                        // SAFETY: as above.
                                        unsafe {
                                            $tile::<1, $r>(Tile { o: g + gi, gi, ..t }, partial)
                                        };
                                        gi += 1;
                                    }
                                }};
                            }
                            match block {
                                1 => tiles!(1),
                                2 => tiles!(2),
                                3 => tiles!(3),
                                4 => tiles!(4),
                                5 => tiles!(5),
                                6 => tiles!(6),
                                7 => tiles!(7),
                                _ => tiles!(8),
                            }
                            r += block;
                        }
                        s0 = s1;
                        if s0 >= steps {
                            break;
                        }
                    }
                    finish_group(w, x, features, rows, g, height, partial, dst);
                    g += height;
                }
            })
        }};
    }

    /// Folds a group's parked accumulators, adds the feature tails, and writes
    /// `dst[o * rows + r]`.
    #[allow(clippy::too_many_arguments)]
    fn finish_group(
        w: &[f32],
        x: &[f32],
        features: usize,
        rows: usize,
        g: usize,
        height: usize,
        partial: &Partial,
        dst: &mut [f32],
    ) {
        let whole = features / LANES * LANES;
        for gi in 0..height {
            let w_tail = &w[(g + gi) * features..][whole..features];
            for r in 0..rows {
                let x_tail = &x[r * features..][whole..features];
                dst[(g + gi) * rows + r] = finish(&partial[gi * rows + r], w_tail, x_tail);
            }
        }
    }

    /// AVX-512 tile height for a block of `r` input rows: `O * R` accumulators plus `R` inputs
    /// and one weight register within the 32 registers.
    const fn shape_avx512(r: usize) -> usize {
        match r {
            1..=3 => 8,
            4 => 6,
            5 | 6 => 4,
            _ => 3,
        }
    }

    /// AVX2 tile height: each accumulator takes two of the 16 registers.
    const fn shape_avx2(r: usize) -> usize {
        match r {
            1 => 4,
            2 => 3,
            3 => 2,
            _ => 1,
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    pub(super) unsafe fn dot_rows_avx512(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
        sweep!(tile_avx512, shape_avx512, 8, w, x, features, dst)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    pub(super) unsafe fn dot_rows_avx2(w: &[f32], x: &[f32], features: usize, dst: &mut [f32]) {
        sweep!(tile_avx2, shape_avx2, 6, w, x, features, dst)
    }

    /// One 16-lane load per step into one accumulator: the plainest stream of reads, which
    /// measured a few percent faster than unrolled multi-accumulator loops.
    #[target_feature(enable = "avx512f")]
    pub(super) fn read_sum_avx512(data: &[f32]) -> f32 {
        let whole = data.len() / LANES * LANES;
        // SAFETY: every load reads `LANES` floats below `whole`.
        unsafe {
            let mut acc = _mm512_setzero_ps();
            let mut i = 0;
            while i < whole {
                acc = _mm512_add_ps(acc, _mm512_loadu_ps(data.as_ptr().add(i)));
                i += LANES;
            }
            _mm512_reduce_add_ps(acc) + data[whole..].iter().sum::<f32>()
        }
    }

    /// [`read_sum_avx512`] in two 8-lane halves.
    #[target_feature(enable = "avx2")]
    pub(super) fn read_sum_avx2(data: &[f32]) -> f32 {
        let whole = data.len() / LANES * LANES;
        // SAFETY: every load reads 8 floats below `whole`.
        unsafe {
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i < whole {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(data.as_ptr().add(i)));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(data.as_ptr().add(i + 8)));
                i += LANES;
            }
            let mut lanes = [0f32; LANES];
            _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
            lanes.iter().sum::<f32>() + data[whole..].iter().sum::<f32>()
        }
    }

    /// Where tile accumulator (oi, ri) is parked.
    #[inline(always)]
    fn slot(t: &Tile, oi: usize, ri: usize) -> usize {
        (t.gi + oi) * t.rows + t.r + ri
    }

    /// One 16-lane register per (weight row, input row), over features `steps`.
    #[target_feature(enable = "avx512f")]
    fn tile_avx512<const O: usize, const R: usize>(t: Tile, partial: &mut Partial) {
        let f = t.features;
        assert!(slot(&t, O - 1, R - 1) < partial.len() && t.steps.1 * LANES <= f);
        // SAFETY: loads read `LANES` floats below `steps.1 * LANES <= f` of rows inside `w`
        // and `x` (the sweep keeps `o + O` and `r + R` in range); parking slots are checked.
        unsafe {
            let w = t.w.as_ptr().add(t.o * f);
            let x = t.x.as_ptr().add(t.r * f);
            let mut acc = [[_mm512_setzero_ps(); R]; O];
            if !t.first {
                for (oi, row) in acc.iter_mut().enumerate() {
                    for (ri, lane) in row.iter_mut().enumerate() {
                        *lane = _mm512_loadu_ps(partial[slot(&t, oi, ri)].as_ptr());
                    }
                }
            }
            for step in t.steps.0..t.steps.1 {
                let i = step * LANES;
                let xs: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(x.add(r * f + i)));
                for (oi, row) in acc.iter_mut().enumerate() {
                    let wv = _mm512_loadu_ps(w.add(oi * f + i));
                    for (lane, xv) in row.iter_mut().zip(&xs) {
                        *lane = _mm512_fmadd_ps(wv, *xv, *lane);
                    }
                }
            }
            for (oi, row) in acc.iter().enumerate() {
                for (ri, lane) in row.iter().enumerate() {
                    _mm512_storeu_ps(partial[slot(&t, oi, ri)].as_mut_ptr(), *lane);
                }
            }
        }
    }

    /// The same as [`tile_avx512`] with each 16-lane accumulator held as two 8-lane halves.
    #[target_feature(enable = "avx2,fma")]
    fn tile_avx2<const O: usize, const R: usize>(t: Tile, partial: &mut Partial) {
        let f = t.features;
        assert!(slot(&t, O - 1, R - 1) < partial.len() && t.steps.1 * LANES <= f);
        // SAFETY: as in `tile_avx512`.
        unsafe {
            let w = t.w.as_ptr().add(t.o * f);
            let x = t.x.as_ptr().add(t.r * f);
            let mut acc = [[[_mm256_setzero_ps(); 2]; R]; O];
            if !t.first {
                for (oi, row) in acc.iter_mut().enumerate() {
                    for (ri, lane) in row.iter_mut().enumerate() {
                        let parked = partial[slot(&t, oi, ri)].as_ptr();
                        *lane = [_mm256_loadu_ps(parked), _mm256_loadu_ps(parked.add(8))];
                    }
                }
            }
            for step in t.steps.0..t.steps.1 {
                for half in 0..2 {
                    let at = step * LANES + 8 * half;
                    let xs: [__m256; R] =
                        std::array::from_fn(|r| _mm256_loadu_ps(x.add(r * f + at)));
                    for (oi, row) in acc.iter_mut().enumerate() {
                        let wv = _mm256_loadu_ps(w.add(oi * f + at));
                        for (lane, xv) in row.iter_mut().zip(&xs) {
                            lane[half] = _mm256_fmadd_ps(wv, *xv, lane[half]);
                        }
                    }
                }
            }
            for (oi, row) in acc.iter().enumerate() {
                for (ri, lane) in row.iter().enumerate() {
                    let parked = partial[slot(&t, oi, ri)].as_mut_ptr();
                    _mm256_storeu_ps(parked, lane[0]);
                    _mm256_storeu_ps(parked.add(8), lane[1]);
                }
            }
        }
    }
}

/// Runs `f` with a per-thread buffer of at least `len` parked accumulators, reused across calls
/// (a forward pass makes hundreds of products).
#[cfg(target_arch = "x86_64")]
fn with_partial<T>(len: usize, f: impl FnOnce(&mut [[f32; LANES]]) -> T) -> T {
    thread_local! {
        static PARTIAL: std::cell::RefCell<Vec<[f32; LANES]>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PARTIAL.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.len() < len {
            buffer.resize(len, [0.0; LANES]);
        }
        f(&mut buffer[..len])
    })
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
