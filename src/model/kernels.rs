//! f32 CPU kernels: dot products in one fixed order, whatever the batch shape and the CPU.
//!
//! Every dot product here is the *canonical dot*: lane `j` of 16 accumulates `a[i] * b[i]` for
//! `i ≡ j (mod 16)` by fused multiply-add in order of `i`, the lanes fold in a fixed tree, and
//! the tail past the last whole 16 adds on by FMA in order. AVX-512 holds the 16 lanes in one
//! register, AVX2 in two, the portable path in an array: all three give the same bits, so a
//! token's numbers depend neither on how many rows share a pass nor on which path ran.

use candle_core::Storage;

use super::aligned::AlignedF32;
use super::error::Result;

/// Runs `run` over disjoint ranges covering `0..items`: on the compute team when the work
/// (multiply-adds) is worth a second thread, else as one range on this thread.
fn for_item_ranges(items: usize, work: usize, run: impl Fn(std::ops::Range<usize>) + Sync) {
    let team = super::team::team();
    if work < PARALLEL_MIN_WORK || team.threads() == 1 || items < 2 {
        run(0..items);
    } else {
        team.for_chunks(items, run);
    }
}

/// The row-major `[rows, outputs]` result of `task(items, columns)` run over the items whose
/// outputs are consecutive column ranges of `per_item` (the last may be narrower) in each row,
/// on the compute team when the work (multiply-adds) is worth a second thread. Each task writes
/// its own columns of every row in place, while they are in cache: a row-major product needs no
/// transposing copy afterwards (for the output head of a 33-row block, one such copy on one
/// thread cost about as much as a layer).
///
/// Each task zeroes its columns itself before running, rather than the caller zeroing the whole
/// result up front: on one thread that was a memset of ~30 MB per 32-row pass of the
/// Pythia-410M shape, with the other thread idle.
pub(crate) fn parallel_columns(
    rows: usize,
    outputs: usize,
    per_item: usize,
    work: usize,
    task: impl Fn(std::ops::Range<usize>, Columns) + Sync,
) -> Vec<f32> {
    let len = rows * outputs;
    let mut dst: Vec<f32> = Vec::with_capacity(len);
    let items = outputs.div_ceil(per_item);
    let base = SharedSlice(dst.as_mut_ptr(), len);
    for_item_ranges(items, work, |range| {
        let first = range.start * per_item;
        let width = (range.end * per_item).min(outputs) - first;
        // SAFETY: the ranges are disjoint, so the windows' columns never overlap, and
        // `for_item_ranges` returns only when every range is done.
        let columns = unsafe { base.zeroed_columns(rows, first, width) };
        task(range, columns)
    });
    // SAFETY: the ranges cover `0..items`, so every column of every row was zeroed above.
    unsafe { dst.set_len(len) };
    dst
}

/// Below this many multiply-adds a second thread costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// The result's allocation of `.1` floats, shared between the team's threads, each of which
/// zeroes and then writes a disjoint window of it.
struct SharedSlice(*mut f32, usize);

// SAFETY: only disjoint windows are ever materialised (see `parallel_columns`).
unsafe impl Sync for SharedSlice {}

impl SharedSlice {
    /// Columns `first..first + width` of the slice's `rows` rows, zeroed.
    ///
    /// # Safety
    /// No other live reference or window may overlap these columns of these rows.
    unsafe fn zeroed_columns(&self, rows: usize, first: usize, width: usize) -> Columns<'_> {
        assert!(self.1.is_multiple_of(rows), "not {rows} whole rows");
        let stride = self.1 / rows;
        // The window checks its columns lie inside the rows before anything is written.
        let columns = unsafe { Columns::window(self.0, stride, rows, first, width) };
        for r in 0..rows {
            // SAFETY: row `r`'s columns lie inside the allocation of `self.1` floats; writing
            // zeros through the pointer makes them initialised floats before any reference.
            unsafe { self.0.add(r * stride + first).write_bytes(0, width) };
        }
        columns
    }
}

/// Lanes of the canonical dot.
const LANES: usize = 16;

/// Weight rows the products sweep together (a multiple of every register tile's height): a
/// caller that splits a product by output rows splits it at multiples of this, or the pieces
/// end in narrow one-row tiles.
pub(crate) const ROW_GROUP: usize = 24;

/// The height of every AVX-512 register tile, and so the rows of its weights' packs: each tile
/// then reads one pack as a sequential stream.
const AVX512_TILE_ROWS: usize = 3;
const _: () = assert!(ROW_GROUP.is_multiple_of(AVX512_TILE_ROWS));

/// The f32 data of a CPU storage.
pub(crate) fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(cpu) => Ok(cpu.as_slice::<f32>()?),
        _ => Err(candle_core::Error::Msg("CPU kernel given a non-CPU tensor".into()).into()),
    }
}

/// `f` on the f32 data of a CPU tensor, made contiguous first (a no-op when it is).
pub(crate) fn with_cpu_f32<T>(
    tensor: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> T,
) -> Result<T> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    let data = &cpu_f32(&storage)?[layout.start_offset()..][..tensor.elem_count()];
    Ok(f(data))
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

    /// Weight rows per pack of [`WeightMatrix`]: those of this path's one-row register tile
    /// (on AVX-512, of every tile).
    fn pack(self) -> usize {
        match self {
            Isa::Avx512 => AVX512_TILE_ROWS,
            Isa::Avx2 => 4,
            Isa::Portable => 1,
        }
    }

    /// Every path this CPU can run, widest first.
    pub fn supported() -> Vec<Isa> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // The AVX-512 path folds its last 8 outputs with AVX2, which every AVX-512 CPU has.
            if has!("avx512f") && has!("avx2") {
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

/// `scores[r * slots + s] = queries[r] · keys[s * stride..][..d]` for every query row `r` (of
/// `d` floats) and slot `s < slots`: canonical dots, so a row's scores do not depend on how
/// many rows share the call.
pub(crate) fn key_dots(queries: &[f32], d: usize, keys: &[f32], stride: usize, scores: &mut [f32]) {
    let rows = queries.len() / d;
    let slots = scores.len() / rows;
    if stride == d {
        let keys = &keys[..slots * d];
        #[cfg(target_arch = "x86_64")]
        if rows >= KEY_BLOCK_MIN_ROWS && d.is_multiple_of(LANES) {
            match Isa::detected() {
                Isa::Avx512 => {
                    // SAFETY: the detected path is one this CPU runs.
                    unsafe { key_block::key_dots_avx512(queries, d, keys, scores) };
                    return;
                }
                Isa::Avx2 => {
                    // SAFETY: the detected path is one this CPU runs.
                    unsafe { key_block::key_dots_avx2(queries, d, keys, scores) };
                    return;
                }
                _ => {}
            }
        }
        // The slots are the rows of one matrix: one product, whose tiles read several keys at
        // once for several queries.
        dot_rows(
            Weights::row_major(keys, d),
            queries,
            &mut Columns::all(scores, rows),
        );
    } else {
        for (query, scores) in queries.chunks(d).zip(scores.chunks_mut(slots)) {
            for (slot, score) in scores.iter_mut().enumerate() {
                *score = dot(query, &keys[slot * stride..][..d]);
            }
        }
    }
}

/// Query rows from which [`key_dots`] transposes keys ([`key_block`]). After a 1500-token
/// prompt (Pythia-410M shape, Intel Xeon, one process, passes alternated against the
/// product), 32 rows took x0.94-0.95 as long on AVX-512 and x0.95-0.96 on AVX2, 16 rows
/// x0.98-0.99 and x1.00; after 48 tokens 32 rows x0.99-1.02 and x0.93-0.96, 16 rows
/// x0.99-1.01 and x0.97. From 2 rows, 4 and 8 rows took x1.02-1.04 on AVX-512 (the
/// product's prefetch hides their read of the keys from memory better) and x0.99-1.02 on AVX2.
#[cfg(target_arch = "x86_64")]
const KEY_BLOCK_MIN_ROWS: usize = 12;

/// The canonical dot of two slices of equal length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0f32];
    let a = Weights::row_major(a, a.len());
    dot_rows_with(Isa::detected(), a, b, &mut Columns::all(&mut out, 1));
    out[0]
}

/// `dst.row(r)[o] = w[o] · x[r]` for each weight row `o` and input row `r`, where `x` holds
/// `dst.rows()` rows of equal length, of which the first `w.features()` floats are the inputs
/// (the rest may pad the rows apart).
pub(crate) fn dot_rows(w: Weights, x: &[f32], dst: &mut Columns) {
    dot_rows_with(Isa::detected(), w, x, dst)
}

/// [`dot_rows`] on a given path (which the CPU must support).
pub(crate) fn dot_rows_with(isa: Isa, w: Weights, x: &[f32], dst: &mut Columns) {
    let rows = dst.rows();
    let outputs = w.outputs();
    assert!(
        x.len().is_multiple_of(rows) && x.len() / rows >= w.features() && dst.width() >= outputs,
        "dot_rows: {} inputs of {} features as {rows} rows, {outputs} outputs into {}",
        x.len(),
        w.features(),
        dst.width()
    );
    match isa {
        // SAFETY: callers pass a path from `Isa::supported`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::dot_rows_avx512(w, x, dst, x86::avx512_streams_in_halves()) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::dot_rows_avx2(w, x, dst, x86::avx2_one_row_ahead()) },
        _ => portable_dot_rows(w, x, dst),
    }
}

/// How [`read_sum`] streams its data: with a path's loads (`loads`: AVX-512's 64 bytes, AVX2's
/// 32), plain or each also prefetching into L2 a fixed distance ahead (`prefetch`), as the
/// one-row kernels do. None is faster everywhere (on Zen 4 the prefetching read ran from as
/// fast to 29% faster; on a Xeon, AVX2's plain loads read 3-27% faster than AVX-512's), so a
/// read ceiling takes the best. Only [`ReadStream::supported`] makes one, so every stream's
/// loads are ones this CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStream {
    loads: Isa,
    prefetch: bool,
}

impl ReadStream {
    /// Every stream this CPU runs: plain and prefetching on each vector path (only plain
    /// portable loads where it has none).
    pub fn supported() -> Vec<ReadStream> {
        let vector = Isa::supported()
            .into_iter()
            .filter(|&isa| isa != Isa::Portable);
        let streams: Vec<ReadStream> = vector
            .flat_map(|loads| [false, true].map(|prefetch| ReadStream { loads, prefetch }))
            .collect();
        if streams.is_empty() {
            return vec![ReadStream {
                loads: Isa::Portable,
                prefetch: false,
            }];
        }
        streams
    }
}

impl std::fmt::Display for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loads = match self.loads {
            Isa::Avx512 => "AVX-512",
            Isa::Avx2 => "AVX2",
            Isa::Portable => "portable",
        };
        let how = if self.prefetch {
            "prefetching"
        } else {
            "plain"
        };
        write!(f, "{loads} {how}")
    }
}

/// The sum of `data`, read as fast as this CPU reads memory, each compute thread reading one
/// contiguous share: what a memory-bandwidth measurement streams (`make bench`'s read
/// ceiling). Its rounding order is its own.
pub fn read_sum(data: &[f32], stream: ReadStream) -> f32 {
    let team = super::team::team();
    let share = data.len().div_ceil(team.threads()).max(1);
    let sums: Vec<std::sync::atomic::AtomicU32> =
        (0..team.threads()).map(|_| Default::default()).collect();
    team.run(&|thread| {
        let part = data.chunks(share).nth(thread).unwrap_or(&[]);
        let sum = read_sum_one_thread(part, stream);
        sums[thread].store(sum.to_bits(), std::sync::atomic::Ordering::Relaxed);
    });
    sums.iter()
        .map(|s| f32::from_bits(s.load(std::sync::atomic::Ordering::Relaxed)))
        .sum()
}

/// f32 multiply-adds per second that this CPU's compute threads sustain together from
/// registers alone, on the detected path, over `iterations` rounds of independent chains per
/// thread: the compute ceiling, which bounds a pass of many rows as the read ceiling bounds a
/// pass of few (`make bench`).
pub fn fma_rate(iterations: usize) -> f64 {
    let team = super::team::team();
    let (per_round, run): (usize, fn(usize) -> f32) = match Isa::detected() {
        // SAFETY (both): the detected path is one this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (16 * 16, |n| unsafe { x86::fma_chains_avx512(n) }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (12 * 8, |n| unsafe { x86::fma_chains_avx2(n) }),
        _ => (LANES, portable_fma_chains),
    };
    let start = std::time::Instant::now();
    team.run(&|_| {
        std::hint::black_box(run(std::hint::black_box(iterations)));
    });
    let seconds = start.elapsed().as_secs_f64();
    (team.threads() * iterations * per_round) as f64 / seconds
}

fn portable_fma_chains(iterations: usize) -> f32 {
    let (a, b) = std::hint::black_box((0.999_9f32, 1e-4f32));
    let mut acc: [f32; LANES] = std::array::from_fn(|k| k as f32);
    for _ in 0..iterations {
        acc.iter_mut().for_each(|c| *c = c.mul_add(a, b));
    }
    acc.iter().sum()
}

fn read_sum_one_thread(data: &[f32], stream: ReadStream) -> f32 {
    let prefetch = stream.prefetch;
    match stream.loads {
        // SAFETY: a stream comes only from `ReadStream::supported`, which lists the paths this
        // CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::read_sum_avx512(data, prefetch) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::read_sum_avx2(data, prefetch) },
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

fn portable_dot_rows(w: Weights, x: &[f32], dst: &mut Columns) {
    let features = w.features();
    let whole = features / LANES * LANES;
    for o in 0..w.outputs() {
        for (r, x_row) in x.chunks_exact(x.len() / dst.rows()).enumerate() {
            let mut lanes = [0f32; LANES];
            for (wc, xc) in w.pieces(o).zip(x_row[..whole].chunks_exact(LANES)) {
                for j in 0..LANES {
                    lanes[j] = wc[j].mul_add(xc[j], lanes[j]);
                }
            }
            dst.row(r)[o] = finish(&lanes, w.tail(o), &x_row[whole..features]);
        }
    }
}

mod columns;
mod gelu;
#[cfg(target_arch = "x86_64")]
mod key_block;
mod layer_norm;
mod softmax;
mod weighted_sum;
mod weights;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use columns::Columns;
pub(crate) use gelu::gelu_erf_in_place;
pub(crate) use layer_norm::layer_norm_rows;
pub(crate) use softmax::softmax_unnormalised;
pub(crate) use weighted_sum::weighted_sums;
pub(crate) use weights::{WeightMatrix, Weights};

/// Runs `f` with a per-thread, cache-line-aligned buffer of `slots` parked 16-lane
/// accumulators, reused across calls (a forward pass makes hundreds of products).
#[cfg(target_arch = "x86_64")]
fn with_park<T>(slots: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    thread_local! {
        static PARK: std::cell::RefCell<AlignedF32> = std::cell::RefCell::default();
    }
    PARK.with(|cell| {
        let mut buffer = cell.borrow_mut();
        if buffer.as_slice().len() < slots * LANES {
            *buffer = AlignedF32::zeros(slots * LANES);
        }
        f(&mut buffer.as_mut_slice()[..slots * LANES])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_finds_its_columns_zeroed_and_the_rest_stays_zero() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (rows, outputs, per_item) = (5, 1000, 24);
        // Memory of the result's size freed just before, full of non-zeros, which the
        // allocator is likely to hand out again.
        drop(std::hint::black_box(vec![f32::NAN; rows * outputs]));
        let tasks = AtomicUsize::new(0);
        // Work enough for the team; each task checks its window and marks its first column.
        let out = parallel_columns(rows, outputs, per_item, usize::MAX, |items, mut dst| {
            tasks.fetch_add(1, Ordering::Relaxed);
            for r in 0..rows {
                let row = dst.row(r);
                assert_eq!(
                    row.len(),
                    (items.end * per_item).min(outputs) - items.start * per_item
                );
                assert!(row.iter().all(|&v| v == 0.0));
                row[0] = (items.start * per_item) as f32 + 0.5;
            }
        });
        if super::super::team::team().threads() > 1 {
            assert!(
                tasks.load(Ordering::Relaxed) > 1,
                "the team split the columns"
            );
        }
        assert_eq!(out.len(), rows * outputs);
        for row in out.chunks(outputs) {
            for (column, &v) in row.iter().enumerate() {
                let marked = v == column as f32 + 0.5 && column % per_item == 0;
                assert!(v == 0.0 || marked, "column {column}: {v}");
            }
        }
    }

    /// Both streams sum every float, the tail included, whatever the prefetch reaches past the
    /// end (small integers, so that every rounding order gives the exact sum).
    #[test]
    fn a_read_sums_all_its_data_with_or_without_prefetch() {
        let data: Vec<f32> = (0..100_003).map(|i| (i % 5) as f32).collect();
        let exact: f64 = data.iter().map(|&x| x as f64).sum();
        for stream in ReadStream::supported() {
            assert_eq!(read_sum(&data, stream) as f64, exact, "{stream:?}");
            assert_eq!(read_sum(&data[..7], stream), 11.0, "{stream:?}");
        }
    }

    pub(super) fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
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
        for features in [1, 15, 16, 17, 48, 200, 256, 528] {
            for outputs in [1, 7, 8, 9, 17, 24, 25, 50] {
                let w = pseudo_random(outputs * features, 3);
                let packed = [3, 4, 8].map(|pack| WeightMatrix::packed(&w, outputs, pack));
                for rows in [1, 2, 3, 4, 5, 8, 9, 17, 33] {
                    let x = pseudo_random(rows * features, 5);
                    let mut reference = vec![0f32; outputs * rows];
                    let mut out = Columns::all(&mut reference, rows);
                    let row_major = Weights::row_major(&w, features);
                    dot_rows_with(Isa::Portable, row_major, &x, &mut out);
                    for isa in Isa::supported() {
                        let packed = packed.iter().map(WeightMatrix::view);
                        let layouts = std::iter::once(row_major).chain(packed);
                        for weights in layouts {
                            let mut got = vec![0f32; outputs * rows];
                            dot_rows_with(isa, weights, &x, &mut Columns::all(&mut got, rows));
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
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_or_in_a_block_on_every_path() {
        // The last shape is a stream long enough for the one-row AVX-512 prefetch.
        for (features, outputs) in [(200, 19), (512, 53), (1024, 53)] {
            let w = pseudo_random(outputs * features, 7);
            let packed = [3, 4, 8].map(|pack| WeightMatrix::packed(&w, outputs, pack));
            let x = pseudo_random(33 * features, 9);
            for isa in Isa::supported() {
                let row_major = Weights::row_major(&w, features);
                for weights in
                    std::iter::once(row_major).chain(packed.iter().map(WeightMatrix::view))
                {
                    for rows in 1..=33 {
                        let mut block = vec![0f32; outputs * rows];
                        let mut out = Columns::all(&mut block, rows);
                        dot_rows_with(isa, weights, &x[..rows * features], &mut out);
                        for r in 0..rows {
                            let mut alone = vec![0f32; outputs];
                            let row = &x[r * features..][..features];
                            dot_rows_with(isa, weights, row, &mut Columns::all(&mut alone, 1));
                            let together = &block[r * outputs..][..outputs];
                            assert_eq!(alone, together, "{isa:?}: row {r} of {rows}");
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 one-row prefetch runs on Intel only: both ways are checked on any CPU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_prefetch_changes_no_bits() {
        if !Isa::supported().contains(&Isa::Avx2) {
            return;
        }
        let (features, outputs) = (1024, 53);
        let w = pseudo_random(outputs * features, 5);
        let packed = WeightMatrix::packed(&w, outputs, 4);
        let x = pseudo_random(features, 6);
        let run = |ahead: Option<usize>| {
            let mut out = vec![0f32; outputs];
            // SAFETY: this CPU runs AVX2 (checked above).
            unsafe { x86::dot_rows_avx2(packed.view(), &x, &mut Columns::all(&mut out, 1), ahead) };
            out
        };
        assert_eq!(run(Some(1536)), run(None));
        let mut portable = vec![0f32; outputs];
        portable_dot_rows(packed.view(), &x, &mut Columns::all(&mut portable, 1));
        assert_eq!(run(Some(1536)), portable);
    }

    /// The AVX-512 path reads streamed weights in halves on Intel only: both ways are checked
    /// on any CPU with AVX-512, for one row, every streamed block and a chunked one, with and
    /// without a tail past the last 16 features.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_loads_in_halves_or_whole_lines_give_the_same_bits() {
        if !Isa::supported().contains(&Isa::Avx512) {
            return;
        }
        let outputs = 53;
        for features in [1024, 1000] {
            let w = pseudo_random(outputs * features, 25);
            let packed = WeightMatrix::packed(&w, outputs, Isa::Avx512.pack());
            for rows in 1..=9 {
                let x = pseudo_random(rows * features, 26);
                let run = |in_halves: bool| {
                    let mut out = vec![0f32; rows * outputs];
                    let dst = &mut Columns::all(&mut out, rows);
                    // SAFETY: this CPU runs AVX-512 (checked above), and so AVX2.
                    unsafe { x86::dot_rows_avx512(packed.view(), &x, dst, in_halves) };
                    out
                };
                let mut portable = vec![0f32; rows * outputs];
                portable_dot_rows(packed.view(), &x, &mut Columns::all(&mut portable, rows));
                assert_eq!(run(true), portable, "{features} features, {rows} rows");
                assert_eq!(run(false), portable, "{features} features, {rows} rows");
            }
        }
    }

    #[test]
    fn a_product_into_a_window_writes_its_columns_of_every_row_only() {
        let (features, outputs, rows, stride, first) = (48, 41, 9, 60, 7);
        let w = pseudo_random(outputs * features, 15);
        let x = pseudo_random(rows * features, 17);
        let mut whole = vec![0f32; rows * outputs];
        let row_major = Weights::row_major(&w, features);
        dot_rows_with(
            Isa::Portable,
            row_major,
            &x,
            &mut Columns::all(&mut whole, rows),
        );
        let packed = WeightMatrix::packed(&w, outputs, 3);
        for isa in Isa::supported() {
            let mut wide = vec![f32::NAN; rows * stride];
            // SAFETY: `wide` outlives the window, the only access to it meanwhile.
            let mut window =
                unsafe { Columns::window(wide.as_mut_ptr(), stride, rows, first, outputs) };
            dot_rows_with(isa, packed.view(), &x, &mut window);
            for (r, row) in wide.chunks(stride).enumerate() {
                assert_eq!(
                    &row[first..first + outputs],
                    &whole[r * outputs..][..outputs]
                );
                let outside = row[..first].iter().chain(&row[first + outputs..]);
                assert!(outside.into_iter().all(|v| v.is_nan()), "{isa:?}: row {r}");
            }
        }
    }

    #[test]
    fn a_product_of_some_packs_equals_those_rows_of_the_whole() {
        let (features, outputs, rows) = (64, 50, 3);
        let w = pseudo_random(outputs * features, 19);
        let x = pseudo_random(rows * features, 21);
        let packed = WeightMatrix::packed(&w, outputs, 4);
        let mut whole = vec![0f32; rows * outputs];
        dot_rows_with(
            Isa::Portable,
            packed.view(),
            &x,
            &mut Columns::all(&mut whole, rows),
        );
        for isa in Isa::supported() {
            for part in [0..24, 24..48, 48..50, 16..50] {
                let mut got = vec![0f32; rows * part.len()];
                let weights = packed.view().rows(part.clone());
                dot_rows_with(isa, weights, &x, &mut Columns::all(&mut got, rows));
                for r in 0..rows {
                    let expected = &whole[r * outputs..][part.clone()];
                    assert_eq!(
                        &got[r * part.len()..][..part.len()],
                        expected,
                        "{isa:?} {part:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_compute_ceiling_counts_multiply_adds_that_ran() {
        // A folded or merged chain shows as an impossible rate (no core does 10^12 a second).
        let rate = fma_rate(200_000);
        let per_thread = rate / super::super::team::team().threads() as f64;
        assert!(
            per_thread.is_finite() && per_thread > 1e6 && per_thread < 1e12,
            "{per_thread} multiply-adds/s per thread"
        );
    }

    #[test]
    fn the_canonical_dot_is_close_to_the_exact_one() {
        let a = pseudo_random(1000, 11);
        let b = pseudo_random(1000, 13);
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot(&a, &b) as f64 - exact).abs() < 1e-3);
    }
}
