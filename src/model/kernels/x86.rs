//! The AVX-512 and AVX2 paths of the canonical dot.
//!
//! A product of `outputs` weight rows by `rows` input rows is cut into register tiles. Weight
//! rows go in groups of [`GROUP`], input rows in blocks of up to 8 (AVX2: 4); each (group,
//! block) is swept by tiles of `O` weight rows by the block's `R` input rows, whose `O * R`
//! 16-lane accumulators stay in registers.
//! - One input row: the product is a read of the weights (memory-bound), written against
//!   keeping enough loads in flight to saturate memory. A tile is one pack of the weights'
//!   layout ([`Weights`]), which it reads as a single sequential stream, prefetching into L2
//!   a fixed distance ahead on AVX-512 ([`AVX512_ONE_ROW_AHEAD`]) and on Intel's AVX2
//!   ([`avx2_one_row_ahead`]). A block of up to 8 rows on AVX-512, whose tiles are whole
//!   packs too (3 rows: [`shape_avx512`]), reads the weights the same way: still
//!   memory-bound, it gains nothing from chunks. On Intel those streams load each line in two
//!   halves ([`tile_avx512_in_halves`]).
//! - Several: it is multiply-adds (compute-bound), written against the FMA units and two
//!   loads per cycle. Features go in chunks of [`CHUNK`], so that a chunk of the group's
//!   weights and of every input row stays in L1 while all the blocks sweep it, and each weight
//!   byte comes from memory once. Accumulators are parked in a small aligned buffer between
//!   chunks: an exact store and load, so lane `j` of every dot still adds its products in
//!   order of feature and the bits do not depend on the cut.
//!   The hardware prefetchers do not fetch a group's next chunk in time (a Pythia-410M 8-row
//!   pass without the hand prefetch: 118 against 74 ms), so the blocks prefetch it, each its
//!   share ([`Prefetch`]).
//!
//! Tried on Pythia-410M's shape and measured slower: chunks of 128, 512 and whole rows (8
//! rows: 58, 61 and 70 against 56 ms), and a BLAS-style micro-kernel over 32-output panels with
//! the inputs broadcast, one FMA chain per output (84 against 63 ms for 8 rows).
//!
//! The 16-lane folds run 16 outputs of one input row at a time (then 8; AVX2: 8) as shuffles
//! and vector adds, pairing lanes exactly as the scalar fold does, which cost about as much as
//! the products themselves for 1024 features. They write each row's outputs straight into the
//! row-major result, so a product of several rows needs no transposing copy.

use super::{finish, with_park, Columns, Weights, AVX512_TILE_ROWS, LANES, ROW_GROUP as GROUP};
use std::arch::x86_64::*;

/// Features per chunk when several input rows share the product.
const CHUNK: usize = 256;

/// How far ahead of its loads (floats) a one-row AVX-512 tile prefetches into L2: 6 KiB, 32
/// steps of a 3-row pack. On Zen 4 (in packs of 8 rows then) the hardware prefetchers alone
/// kept too few lines in flight: a Pythia-410M 1-row pass, paired against a read of as many
/// bytes, ran 5-12% faster with it (82-87% of that read → 91-94% at 27-31 GB/s; 72-73% →
/// 81-84% at ~40 GB/s); 1024 and 2048 floats did a little less, 4096 and 8192 none. On an
/// Intel Xeon in packs of 3, 768, 1024 and 2304 floats did within 2% of it.
/// Into L1 or non-temporal it gained nothing, and on AVX2 it was neutral or slower.
const AVX512_ONE_ROW_AHEAD: usize = 1536;

/// A one-row product prefetches only when its weights are at least this many floats (192
/// KiB, 32 times AVX-512's distance), so that the lines fetched past their end are a small
/// part of the stream: on the tiny draft's products (a few thousand floats per task) the
/// prefetch cost 4%. A fixed length rather than a multiple of each distance, so that AVX2's
/// shorter distance left the products it prefetches unchanged.
const LONG_STREAM: usize = 32 * AVX512_ONE_ROW_AHEAD;
// The kernels' tests run a one-row product of 53 x 1024 weights, on this path's prefetch.
const _: () = assert!(53 * 1024 >= LONG_STREAM);
const _: () = assert!(LONG_STREAM >= 32 * AVX2_ONE_ROW_AHEAD);

/// The AVX2 one-row distance, where it prefetches (see [`avx2_one_row_ahead`]): 3 KiB, 24
/// steps of a 4-row pack.
const AVX2_ONE_ROW_AHEAD: usize = 768;

/// How far ahead a one-row AVX2 tile prefetches into L2, by vendor. On an Intel Xeon with
/// AVX-512 (AVX2 path forced), a Pythia-410M 1-row pass ran 4% faster with it (x0.956-0.961
/// at 768-3072 floats, in one process against the pass without); on Zen 4 it was neutral or
/// slower (1.003-1.103x at 1024, 1.163x at 2048), so AMD's AVX2 leaves it to the hardware.
/// Once the weights lay on huge pages, 1536 floats lost that gain on the Xeon (no prefetch
/// x0.968-0.975 of it) while 768 kept it: x0.950-0.971 of 1536 in four runs, ahead of 512,
/// 640 and 896 (x0.955-0.983).
pub(super) fn avx2_one_row_ahead() -> Option<usize> {
    intel().then_some(AVX2_ONE_ROW_AHEAD)
}

/// Whether the AVX-512 path reads weights streamed from memory in 32-byte halves
/// ([`tile_avx512_in_halves`]): on Intel, where it was measured faster. It was not measured on
/// Zen 4, so AMD keeps the whole-line loads its one-row tile was tuned with.
pub(super) fn avx512_streams_in_halves() -> bool {
    intel()
}

fn intel() -> bool {
    static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INTEL.get_or_init(|| {
        let id = __cpuid(0);
        [id.ebx, id.edx, id.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e] // "GenuineIntel"
    })
}

/// One tile's place, as raw pointers checked by the sweep: its first weight row `row` of
/// `weights` (whose data starts at `w`) and input row 0 (rows `x_stride` apart), both at the
/// chunk's first feature `feature`, and the parking slot of accumulator (0, 0); accumulator
/// (oi, ri) parks `(oi * rows + ri) * LANES` floats further.
#[derive(Clone, Copy)]
struct Tile<'a> {
    w: *const f32,
    weights: Weights<'a>,
    row: usize,
    feature: usize,
    x: *const f32,
    x_stride: usize,
    steps: usize,
    rows: usize,
    park: *mut f32,
    first: bool,
    /// The lines the tile prefetches into L2 (`None` where the path or a short stream does
    /// not gain from it).
    prefetch: Option<Prefetch>,
}

/// Each weight load of the steps `phase, phase + phases, ...` of a tile also prefetches the
/// line `ahead` floats further.
/// - With several input rows in chunks: the load the same tile makes in the next chunk (or the
///   next group's first), fetched while this one computes. Each of the chunk's `phases`
///   blocks of input rows takes every `phases`-th step, so the fetches spread over the whole
///   chunk. When the first block alone fetched the next chunk, in a quarter of the chunk's
///   time for 32 rows, a Pythia-410M 32-node tree pass ran 15% longer on an Intel Xeon
///   (AVX-512, in one process: 145-147 against 126-128 ms; AVX2: 227-229 against 204-205 ms);
///   16 rows 11% longer. A single block fetches on every step, as before.
/// - With one row, or a block read as one row is: every step, a fixed distance down the
///   stream.
#[derive(Clone, Copy)]
struct Prefetch {
    ahead: usize,
    phase: usize,
    phases: usize,
}

/// Runs `$body` for a tile's steps `$step` in order, `$fetch` saying whether the step's loads
/// prefetch. Each case is a loop of its own, so that the two common ones test nothing per step
/// (with the phase tested, the one-row tile's loop gained a branch and stack reloads). A macro,
/// not a function taking a closure: a closure the compiler does not inline runs without the
/// tile's target features, and every intrinsic in it becomes a call (AVX2 passes ran 4.5-30x
/// slower).
macro_rules! for_steps {
    ($steps:expr, $prefetch:expr, |$step:ident, $fetch:ident| $body:block) => {
        match $prefetch {
            None => {
                for $step in 0..$steps {
                    let $fetch = false;
                    $body
                }
            }
            Some(p) if p.phases == 1 => {
                for $step in 0..$steps {
                    let $fetch = true;
                    $body
                }
            }
            Some(p) => {
                let mut next = p.phase;
                for $step in 0..$steps {
                    let $fetch = $step == next;
                    if $fetch {
                        next += p.phases;
                    }
                    $body
                }
            }
        }
    };
}

impl Tile<'_> {
    #[inline(always)]
    fn slot(&self, oi: usize, ri: usize) -> *mut f32 {
        self.park.wrapping_add((oi * self.rows + ri) * LANES)
    }

    /// The chunk's first 16 weights of the tile's rows; each row's next 16 lie
    /// `weights.step_stride()` floats further.
    #[inline(always)]
    fn weight_rows<const O: usize>(&self) -> [*const f32; O] {
        std::array::from_fn(|oi| {
            let at = self.weights.offset(self.row + oi, self.feature);
            self.w.wrapping_add(at)
        })
    }
}

/// Sweeps the product with `$tile::<O, R>`, `$shape` mapping a block of R input rows
/// to the register tile height O, then folds each group with `$folds` (widest first).
macro_rules! sweep {
    ($tile:ident, $stream_tile:ident, $stream_tile_on:expr, $shape:ident, $max_block:expr, $max_streamed:expr, $one_row_ahead:expr, $folds:expr, $w:expr, $x:expr, $dst:expr) => {{
        let (w, x, dst): (Weights, &[f32], &mut Columns) = ($w, $x, $dst);
        let features = w.features();
        let rows = dst.rows();
        let pack = w.step_stride() / LANES;
        // One block whose tiles are whole packs reads the weights as one row does: a chunk
        // would only park its accumulators (Intel, 410M shape, packs of 8, one process: 2 rows
        // x0.968, 3 rows x0.959 streamed against chunked).
        let streams = rows == 1 || (rows <= $max_streamed && $shape(rows) == pack);
        let stream_tile = streams && $stream_tile_on;
        let one_row_ahead: Option<usize> =
            ($one_row_ahead).filter(|_| streams && w.data().len() >= LONG_STREAM);
        let x_stride = x.len() / rows;
        let outputs = w.outputs();
        let base = w.data().as_ptr();
        let stride = w.step_stride();
        assert!(dst.width() >= outputs && x_stride >= features && rows * x_stride == x.len());
        let steps = features / LANES;
        let chunk = if streams { steps.max(1) } else { CHUNK / LANES };
        with_park(GROUP * rows, |park| {
            let mut g = 0;
            while g < outputs {
                let height = (outputs - g).min(GROUP);
                let mut s0 = 0;
                loop {
                    let s1 = (s0 + chunk).min(steps);
                    let ahead = if s1 < steps {
                        (s1 - s0) * stride
                    } else {
                        GROUP * features - s0 * stride
                    };
                    let mut r = 0;
                    while r < rows {
                        let block = (rows - r).min($max_block);
                        let t = Tile {
                            w: base,
                            weights: w,
                            row: g,
                            feature: s0 * LANES,
                            x: x[r * x_stride + s0 * LANES..].as_ptr(),
                            x_stride,
                            steps: s1 - s0,
                            rows,
                            park: park[r * LANES..].as_mut_ptr(),
                            first: s0 == 0,
                            prefetch: if streams {
                                one_row_ahead.map(|ahead| Prefetch {
                                    ahead,
                                    phase: 0,
                                    phases: 1,
                                })
                            } else {
                                Some(Prefetch {
                                    ahead,
                                    phase: r / $max_block,
                                    phases: rows.div_ceil($max_block),
                                })
                            },
                        };
                        macro_rules! tiles {
                            ($r:literal) => {{
                                const O: usize = $shape($r);
                                let mut gi = 0;
                                while gi < height {
                                    let at = Tile {
                                        row: t.row + gi,
                                        park: t.park.wrapping_add(gi * rows * LANES),
                                        ..t
                                    };
                                    // A whole tile of O weight rows, or one row at the end.
                                    let whole = gi + O <= height;
                                    // SAFETY: rows `g + gi..` of `w` and `r..r + $r` of `x` are
                                    // in range (`gi < height`, `r + block <= rows`), as are
                                    // their parking slots (`GROUP * rows` of them); loads stop
                                    // at step `s1 <= features / LANES`.
                                    unsafe {
                                        match (whole, stream_tile) {
                                            (true, true) => $stream_tile::<O, $r>(at),
                                            (true, false) => $tile::<O, $r>(at),
                                            (false, true) => $stream_tile::<1, $r>(at),
                                            (false, false) => $tile::<1, $r>(at),
                                        }
                                    }
                                    gi += if whole { O } else { 1 };
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
                let group = Group {
                    first: g,
                    height,
                    rows,
                };
                if features % LANES == 0 {
                    // SAFETY: `$folds` run on this CPU; the group's slots are parked.
                    unsafe { group.fold(park, $folds, dst) };
                } else {
                    group.finish_with_tails(w, x, park, dst);
                }
                g += height;
            }
        })
    }};
}

/// AVX-512 tile height for a block of `r` input rows: 3, the pack, for every block, so that
/// each tile reads one pack as a sequential stream. Up to 24 accumulators, the 3 weights and
/// one input fit the 32 registers. Taller tiles for fewer rows (8 for 1-3 rows, 6 for 4, 4 for
/// 5-6) in packs of 8 read the weights in one stream only for 1-3 rows; the 3 x 8 tiles of an
/// 8-row block read 3 of every 8 lines each. With packs of 3 (Intel, Pythia-410M shape, two
/// copies of the model in one process, passes alternated): 2 rows 47.5 against 49.2-49.6 ms,
/// 4 rows 52.9 against 55.7-56.4, 8 rows 60.7 against 62.8-63.0; 1 row the same (46.1 against
/// 46.1-46.4); a 32-node tree 1-2% slower (124.6-125.8 against 123.2-123.6).
const fn shape_avx512(_r: usize) -> usize {
    AVX512_TILE_ROWS
}

/// Input rows per block of the AVX2 chunked sweep: 3 x 4 tiles. On an Intel Xeon (AVX2 path
/// forced, Pythia-410M shape, one process, passes alternated), blocks of at most 6 rows took
/// x1.01-1.03 as long and blocks of 3 x1.03-1.14 (4 rows alone: x0.94).
const AVX2_MAX_BLOCK: usize = 4;

/// AVX2 tile height for a block of `r` input rows. A one-row tile (the one row's stream) holds
/// each 16-lane accumulator as two 8-lane registers, so it is one pack of 4 (`2 * 4 + 1 + 1`
/// of the 16 registers). The chunked sweep's tiles run the two halves one after the other
/// ([`tile_avx2_by_halves`]), one register per accumulator: `O * R + min(O, R) + 1 <= 16`.
const fn shape_avx2(r: usize) -> usize {
    match r {
        1 => 4,
        2 => 6,
        3 => 4,
        4 => 3,
        _ => 2,
    }
}

/// `in_halves`: [`avx512_streams_in_halves`], or either way (the loads read the same floats).
///
/// # Safety
/// The CPU must have AVX-512F and AVX2 (for the 8-wide folds).
#[target_feature(enable = "avx512f,avx2")]
pub(super) fn dot_rows_avx512(w: Weights, x: &[f32], dst: &mut Columns, in_halves: bool) {
    let folds: &[Fold] = &[(16, Avx512::fold), (8, Avx2::fold)];
    sweep!(
        tile_avx512,
        tile_avx512_in_halves,
        in_halves,
        shape_avx512,
        8,
        8,
        Some(AVX512_ONE_ROW_AHEAD),
        folds,
        w,
        x,
        dst
    )
}

/// `one_row_ahead`: [`avx2_one_row_ahead`], or any other distance (a prefetch moves no data).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_rows_avx2(
    w: Weights,
    x: &[f32],
    dst: &mut Columns,
    one_row_ahead: Option<usize>,
) {
    let folds: &[Fold] = &[(8, Avx2::fold)];
    sweep!(
        tile_avx2_by_halves,
        tile_avx2,
        true,
        shape_avx2,
        AVX2_MAX_BLOCK,
        1,
        one_row_ahead,
        folds,
        w,
        x,
        dst
    )
}

/// One 16-lane register per (weight row, input row), over the tile's steps, each weight line
/// one 64-byte load: for weights that the chunked sweep has prefetched into L2.
///
/// # Safety
/// Runs only inlined into an AVX-512F function; the tile's rows and slots must be in range.
#[inline(always)]
unsafe fn tile_avx512<const O: usize, const R: usize>(t: Tile) {
    unsafe { tile_avx512_with::<O, R, false>(t) }
}

/// [`tile_avx512`] loading each weight line as two 32-byte halves, for weights streamed from
/// memory. On an Intel Xeon a stream of 64-byte loads reads memory slower than one of 32-byte
/// loads, whatever the alignment: a two-thread read of 3 GiB ran at 30.3-30.8 GB/s in whole
/// lines, 34.5 in halves joined as here and 34.9 with AVX2 alone. (Presumably the L1
/// prefetcher, which Intel documents as triggered by ascending loads within a line; there were
/// no counters to check.) In the kernels (Pythia-410M shape, one process, passes alternated)
/// blocks of 2, 4 and 8 rows took x0.95, x0.94 and x0.92-0.93, 1 row x0.98. In the chunked
/// sweep, whose weights come from L2, halves gained nothing (a 32-node tree x1.00-1.04).
///
/// # Safety
/// As [`tile_avx512`].
#[inline(always)]
unsafe fn tile_avx512_in_halves<const O: usize, const R: usize>(t: Tile) {
    unsafe { tile_avx512_with::<O, R, true>(t) }
}

/// A weight line as two 32-byte loads joined in one register. The upper half is read as a
/// volatile unaligned load, so that the compiler cannot merge the two into one 64-byte load
/// (it does with plain loads).
///
/// # Safety
/// `at` must point at 16 readable floats; runs only inlined into an AVX-512F function.
#[inline(always)]
unsafe fn load_in_halves(at: *const f32) -> __m512 {
    #[derive(Clone, Copy)]
    #[repr(C, packed)]
    struct Unaligned(__m256);
    unsafe {
        let low = _mm256_castps_pd(_mm256_loadu_ps(at));
        let high = std::ptr::read_volatile(at.add(8).cast::<Unaligned>()).0;
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(low),
            _mm256_castps_pd(high),
        ))
    }
}

/// # Safety
/// As [`tile_avx512`].
#[inline(always)]
unsafe fn tile_avx512_with<const O: usize, const R: usize, const HALVES: bool>(t: Tile) {
    let f = t.x_stride;
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); R]; O];
        if !t.first {
            for (oi, lanes) in acc.iter_mut().enumerate() {
                for (ri, lane) in lanes.iter_mut().enumerate() {
                    *lane = _mm512_load_ps(t.slot(oi, ri));
                }
            }
        }
        let weight_rows = t.weight_rows::<O>();
        let stride = t.weights.step_stride();
        let ahead = t.prefetch.map_or(0, |p| p.ahead);
        for_steps!(t.steps, t.prefetch, |step, fetch| {
            let i = step * LANES;
            let weight = |oi: usize| {
                let at = weight_rows[oi].add(step * stride);
                if fetch {
                    _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(ahead).cast());
                }
                if HALVES {
                    load_in_halves(at)
                } else {
                    _mm512_loadu_ps(at)
                }
            };
            let input = |ri: usize| _mm512_loadu_ps(t.x.add(ri * f + i));
            tile_step(&mut acc, weight, input, |w, x, a| _mm512_fmadd_ps(w, x, a));
        });
        for (oi, lanes) in acc.iter().enumerate() {
            for (ri, lane) in lanes.iter().enumerate() {
                _mm512_store_ps(t.slot(oi, ri), *lane);
            }
        }
    }
}

/// The same as [`tile_avx512`] with each 16-lane accumulator held as two 8-lane halves,
/// `acc[half][oi][ri]`.
///
/// # Safety
/// Runs only inlined into an AVX2+FMA function; as [`tile_avx512`].
#[inline(always)]
unsafe fn tile_avx2<const O: usize, const R: usize>(t: Tile) {
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); R]; O]; 2];
        if !t.first {
            for (half, acc) in acc.iter_mut().enumerate() {
                for (oi, lanes) in acc.iter_mut().enumerate() {
                    for (ri, lane) in lanes.iter_mut().enumerate() {
                        *lane = _mm256_load_ps(t.slot(oi, ri).add(8 * half));
                    }
                }
            }
        }
        let weight_rows = t.weight_rows::<O>();
        let ahead = t.prefetch.map_or(0, |p| p.ahead);
        for_steps!(t.steps, t.prefetch, |step, fetch| {
            for (half, acc) in acc.iter_mut().enumerate() {
                let at = HalfStep { step, half, fetch };
                avx2_half_step(acc, &t, &weight_rows, at, ahead);
            }
        });
        for (half, acc) in acc.iter().enumerate() {
            for (oi, lanes) in acc.iter().enumerate() {
                for (ri, lane) in lanes.iter().enumerate() {
                    _mm256_store_ps(t.slot(oi, ri).add(8 * half), *lane);
                }
            }
        }
    }
}

/// The AVX2 tile of the chunked sweep: weights from L2 and inputs from L1, it is written
/// against the FMA units and two loads per cycle. Lanes 0-7 and 8-15 of an accumulator are
/// independent sums until the fold, so the tile sweeps its chunk once per half with one
/// register per accumulator: 3 x 4 and 4 x 3 tiles (12 multiply-adds for 7 loads) fit where
/// interleaved halves allowed 1 x 6 (6 for 7).
///
/// # Safety
/// Runs only inlined into an AVX2+FMA function; as [`tile_avx512`].
#[inline(always)]
unsafe fn tile_avx2_by_halves<const O: usize, const R: usize>(t: Tile) {
    let weight_rows = t.weight_rows::<O>();
    let ahead = t.prefetch.map_or(0, |p| p.ahead);
    for half in 0..2 {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); R]; O];
            if !t.first {
                for (oi, lanes) in acc.iter_mut().enumerate() {
                    for (ri, lane) in lanes.iter_mut().enumerate() {
                        *lane = _mm256_load_ps(t.slot(oi, ri).add(8 * half));
                    }
                }
            }
            for_steps!(t.steps, t.prefetch, |step, fetch| {
                let at = HalfStep { step, half, fetch };
                avx2_half_step(&mut acc, &t, &weight_rows, at, ahead);
            });
            for (oi, lanes) in acc.iter().enumerate() {
                for (ri, lane) in lanes.iter().enumerate() {
                    _mm256_store_ps(t.slot(oi, ri).add(8 * half), *lane);
                }
            }
        }
    }
}

/// Where an AVX2 tile's step runs: lanes `8 * half..8 * half + 8` of its `step`, whose weight
/// loads prefetch (on the first half) when `fetch`.
#[derive(Clone, Copy)]
struct HalfStep {
    step: usize,
    half: usize,
    fetch: bool,
}

/// One half-step of an AVX2 tile: `acc` holds the tile's accumulators' lanes of that half.
///
/// # Safety
/// Runs only inlined into an AVX2+FMA function; the step must be in the tile's range.
#[inline(always)]
unsafe fn avx2_half_step<const O: usize, const R: usize>(
    acc: &mut [[__m256; R]; O],
    t: &Tile,
    weight_rows: &[*const f32; O],
    at: HalfStep,
    ahead: usize,
) {
    let HalfStep { step, half, fetch } = at;
    let (stride, i) = (t.weights.step_stride(), step * LANES + 8 * half);
    unsafe {
        let weight = |oi: usize| {
            let at = weight_rows[oi].add(step * stride + 8 * half);
            if fetch && half == 0 {
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(ahead).cast());
            }
            _mm256_loadu_ps(at)
        };
        let input = |ri: usize| _mm256_loadu_ps(t.x.add(ri * t.x_stride + i));
        tile_step(acc, weight, input, |w, x, a| _mm256_fmadd_ps(w, x, a));
    }
}

/// One step of a tile on either path: `acc[oi][ri] = fma(weight(oi), input(ri), acc[oi][ri])`.
/// It holds the smaller side's loads in registers and streams the other: the loads are the
/// same, but `O * R + min(O, R) + 1` registers (AVX2's one-row tile: twice the accumulators)
/// fit where holding the larger side spilled an accumulator, a store and a reload on its chain
/// every step.
#[inline(always)]
fn tile_step<V: Copy, const O: usize, const R: usize>(
    acc: &mut [[V; R]; O],
    weight: impl Fn(usize) -> V,
    input: impl Fn(usize) -> V,
    fma: impl Fn(V, V, V) -> V,
) {
    if R <= O {
        let xs: [V; R] = std::array::from_fn(&input);
        for (oi, lanes) in acc.iter_mut().enumerate() {
            let wv = weight(oi);
            for (lane, xv) in lanes.iter_mut().zip(&xs) {
                *lane = fma(wv, *xv, *lane);
            }
        }
    } else {
        let ws: [V; O] = std::array::from_fn(&weight);
        for ri in 0..R {
            let xv = input(ri);
            for (lanes, wv) in acc.iter_mut().zip(&ws) {
                lanes[ri] = fma(*wv, xv, lanes[ri]);
            }
        }
    }
}

/// A vector fold of `N` parked accumulators into `N` consecutive outputs: `(N, fold)`, where
/// `fold(first slot, floats from one slot to the next, outputs)`.
type Fold = (usize, unsafe fn(*const f32, usize, *mut f32));

/// The outputs `first..first + height` of a product of `rows` input rows, whose accumulator
/// (output `first + gi`, row `r`) is parked in slot `gi * rows + r`.
struct Group {
    first: usize,
    height: usize,
    rows: usize,
}

impl Group {
    /// Folds the parked accumulators into `dst`, row by row: runs of outputs with the widest
    /// of `folds` that fits, the rest one by one.
    ///
    /// # Safety
    /// The CPU must run every fold; `park` must hold the group's `height * rows` aligned slots.
    #[inline(always)]
    unsafe fn fold(&self, park: &[f32], folds: &[Fold], dst: &mut Columns) {
        assert!(park.len() >= self.height * self.rows * LANES);
        for r in 0..self.rows {
            let out = &mut dst.row(r)[self.first..self.first + self.height];
            let mut gi = 0;
            for &(n, fold_n) in folds {
                while gi + n <= self.height {
                    let first_slot = park[(gi * self.rows + r) * LANES..].as_ptr();
                    // SAFETY: slots gi..gi + n of row r are in `park` (asserted above), and
                    // `out` has n floats from gi.
                    unsafe { fold_n(first_slot, self.rows * LANES, out[gi..gi + n].as_mut_ptr()) };
                    gi += n;
                }
            }
            for (k, value) in out.iter_mut().enumerate().skip(gi) {
                *value = finish(park_slot(park, k * self.rows + r), &[], &[]);
            }
        }
    }

    /// The scalar fold for products whose features end in a tail past the last whole 16.
    fn finish_with_tails(&self, w: Weights, x: &[f32], park: &[f32], dst: &mut Columns) {
        let features = w.features();
        let whole = features / LANES * LANES;
        let x_stride = x.len() / self.rows;
        for gi in 0..self.height {
            let o = self.first + gi;
            let w_tail = w.tail(o);
            for r in 0..self.rows {
                let x_tail = &x[r * x_stride..][whole..features];
                let slot = park_slot(park, gi * self.rows + r);
                dst.row(r)[o] = finish(slot, w_tail, x_tail);
            }
        }
    }
}

fn park_slot(park: &[f32], slot: usize) -> &[f32; LANES] {
    park[slot * LANES..][..LANES].try_into().expect("16 lanes")
}

struct Avx512;

impl Avx512 {
    /// Folds 16 parked accumulators, `stride` floats apart, into 16 outputs: (j, j+8),
    /// (j, j+4), (j, j+2), (0, 1), as [`super::fold_lanes`], each level pairing two registers'
    /// halves, quarters or pairs.
    ///
    /// # Safety
    /// AVX-512F; `src` holds 16 aligned slots `stride` apart, `dst` 16 floats.
    #[target_feature(enable = "avx512f")]
    unsafe fn fold(src: *const f32, stride: usize, dst: *mut f32) {
        unsafe {
            let a: [__m512; 16] = std::array::from_fn(|k| _mm512_load_ps(src.add(k * stride)));
            // Accumulators 2m, 2m+1 → their 8 sums (j, j+8) side by side.
            let h: [__m512; 8] = std::array::from_fn(|m| {
                let (p, q) = (a[2 * m], a[2 * m + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x44>(p, q),
                    _mm512_shuffle_f32x4::<0xEE>(p, q),
                )
            });
            // 4n..4n+4 → their 4 sums (j, j+4) in the four 128-bit lanes.
            let q: [__m512; 4] = std::array::from_fn(|n| {
                let (p, r) = (h[2 * n], h[2 * n + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(p, r),
                    _mm512_shuffle_f32x4::<0xDD>(p, r),
                )
            });
            // Lane L of v[k]: the pairs (j, j+2) of accumulators 8k+L and 8k+4+L.
            let v: [__m512; 2] = std::array::from_fn(|k| {
                let (p, r) = (q[2 * k], q[2 * k + 1]);
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x44>(p, r),
                    _mm512_shuffle_ps::<0xEE>(p, r),
                )
            });
            // Element 4L+e: the sum of accumulator 4e+L; transpose back into order.
            let sums = _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(v[0], v[1]),
                _mm512_shuffle_ps::<0xDD>(v[0], v[1]),
            );
            let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
            _mm512_storeu_ps(dst, _mm512_permutexvar_ps(order, sums));
        }
    }
}

struct Avx2;

impl Avx2 {
    /// [`Avx512::fold`] for 8 accumulators in 8-lane registers.
    ///
    /// # Safety
    /// AVX2; `src` holds 8 aligned slots `stride` apart, `dst` 8 floats.
    #[target_feature(enable = "avx2")]
    unsafe fn fold(src: *const f32, stride: usize, dst: *mut f32) {
        unsafe {
            let h: [__m256; 8] = std::array::from_fn(|k| {
                let slot = src.add(k * stride);
                _mm256_add_ps(_mm256_load_ps(slot), _mm256_load_ps(slot.add(8)))
            });
            // Accumulators 2n, 2n+1 → their 4 sums (j, j+4) in the two 128-bit lanes.
            let q: [__m256; 4] = std::array::from_fn(|n| {
                let (p, r) = (h[2 * n], h[2 * n + 1]);
                _mm256_add_ps(
                    _mm256_permute2f128_ps::<0x20>(p, r),
                    _mm256_permute2f128_ps::<0x31>(p, r),
                )
            });
            // Lane L of v[k]: the pairs (j, j+2) of accumulators 4k+L and 4k+2+L.
            let v: [__m256; 2] = std::array::from_fn(|k| {
                let (p, r) = (q[2 * k], q[2 * k + 1]);
                _mm256_add_ps(
                    _mm256_shuffle_ps::<0x44>(p, r),
                    _mm256_shuffle_ps::<0xEE>(p, r),
                )
            });
            // Element 4L+e: the sum of accumulator 2e+L.
            let sums = _mm256_add_ps(
                _mm256_shuffle_ps::<0x88>(v[0], v[1]),
                _mm256_shuffle_ps::<0xDD>(v[0], v[1]),
            );
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            _mm256_storeu_ps(dst, _mm256_permutevar8x32_ps(sums, order));
        }
    }
}

/// One 16-lane load per step into one accumulator: the plainest stream of reads, which
/// measured a few percent faster than unrolled multi-accumulator loops. With `prefetch`, each
/// load also prefetches into L2 as far ahead as the one-row tile does.
#[target_feature(enable = "avx512f")]
pub(super) fn read_sum_avx512(data: &[f32], prefetch: bool) -> f32 {
    let whole = data.len() / LANES * LANES;
    // SAFETY: every load reads `LANES` floats below `whole`; a prefetch reads nothing.
    unsafe {
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < whole {
            let at = data.as_ptr().add(i);
            if prefetch {
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(AVX512_ONE_ROW_AHEAD).cast());
            }
            acc = _mm512_add_ps(acc, _mm512_loadu_ps(at));
            i += LANES;
        }
        _mm512_reduce_add_ps(acc) + data[whole..].iter().sum::<f32>()
    }
}

/// Multiply-adds from registers only, 16 independent chains of 16 lanes (more than the FMA
/// units' latency times their count on any AVX-512 CPU): the compute ceiling. Returns a value
/// that depends on every chain, so that none is optimised away.
#[target_feature(enable = "avx512f")]
pub(super) fn fma_chains_avx512(iterations: usize) -> f32 {
    // Opaque factors and distinct starts, so that the compiler can neither fold the chains
    // nor merge them.
    let (a, b) = std::hint::black_box((_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-4)));
    let mut acc: [__m512; 16] = std::array::from_fn(|k| _mm512_set1_ps(k as f32));
    for _ in 0..iterations {
        for chain in acc.iter_mut() {
            *chain = _mm512_fmadd_ps(*chain, a, b);
        }
    }
    let total = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, c| _mm512_add_ps(s, *c));
    _mm512_reduce_add_ps(total)
}

/// [`fma_chains_avx512`] with 12 chains of 8 lanes (16 registers in all with the constants).
#[target_feature(enable = "avx2,fma")]
pub(super) fn fma_chains_avx2(iterations: usize) -> f32 {
    let (a, b) = std::hint::black_box((_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-4)));
    let mut acc: [__m256; 12] = std::array::from_fn(|k| _mm256_set1_ps(k as f32));
    for _ in 0..iterations {
        for chain in acc.iter_mut() {
            *chain = _mm256_fmadd_ps(*chain, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let total = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, c| _mm256_add_ps(s, *c));
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    lanes.iter().sum()
}

/// [`read_sum_avx512`] in two 8-lane halves.
#[target_feature(enable = "avx2")]
pub(super) fn read_sum_avx2(data: &[f32], prefetch: bool) -> f32 {
    let whole = data.len() / LANES * LANES;
    // SAFETY: every load reads 8 floats below `whole`; a prefetch reads nothing.
    unsafe {
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i < whole {
            let at = data.as_ptr().add(i);
            if prefetch {
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(AVX512_ONE_ROW_AHEAD).cast());
            }
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(at));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(at.add(8)));
            i += LANES;
        }
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi);
        lanes.iter().sum::<f32>() + data[whole..].iter().sum::<f32>()
    }
}
