//! A fixed team of compute threads for the CPU kernels, started once per process.
//!
//! A forward pass runs ~100 parallel products back to back, each a few hundred microseconds or
//! less. Between them the team's workers spin, so a product starts in well under a microsecond,
//! where waking a sleeping rayon worker (a cross-CPU interrupt under a hypervisor) cost 50-80 µs
//! per product. Every wait spins briefly, then yields the CPU, so that a machine busier than its
//! cores (tests, two sweeps at once) slows the team down instead of stalling it on a descheduled
//! thread; idle workers park after a while and cost nothing between generations.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Spins before a waiter starts yielding: a few microseconds.
const SPINS: u32 = 2_000;
/// How long an idle worker keeps polling before it parks.
const IDLE_BEFORE_PARK: Duration = Duration::from_millis(2);

/// The job of the current round, type-erased: `call(data, thread_index)`.
#[derive(Clone, Copy)]
struct Job {
    call: unsafe fn(*const (), usize),
    data: *const (),
}

struct Shared {
    /// Round number: a worker runs the job each time this moves on.
    round: AtomicUsize,
    /// Workers done with the current round.
    done: AtomicUsize,
    job: UnsafeCell<Job>,
    panicked: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: `job` is written only by the thread holding `Team::lock`, before the round number is
// published (release) and read by workers after they see it (acquire); the caller waits for
// every worker before the data it points to goes away.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<Thread>,
    lock: Mutex<()>,
}

thread_local! {
    /// Set on team workers and on a caller while it runs its share: a nested call runs inline.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// The process's team: one thread per compute thread (the caller is one of them).
pub(crate) fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| Team::new(candle_core::utils::get_num_threads().saturating_sub(1)))
}

impl Team {
    fn new(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            round: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(Job {
                call: |_, _| {},
                data: std::ptr::null(),
            }),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let workers = (0..workers)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("dynatree-team-{}", index + 1))
                    .spawn(move || work(&shared, index + 1))
                    .expect("a team thread starts")
                    .thread()
                    .clone()
            })
            .collect();
        Self {
            shared,
            workers,
            lock: Mutex::new(()),
        }
    }

    /// Threads that run a job, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `job(thread)` once on every thread of the team (the caller is thread 0) and returns
    /// when all are done. Called from inside a job, it runs `job(0)` alone.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || INSIDE.get() {
            return job(0);
        }
        let _one_round_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        unsafe fn call(data: *const (), thread: usize) {
            // SAFETY: `data` is the `&&dyn Fn` published below, alive until every worker is done.
            let job = unsafe { &*(data as *const &(dyn Fn(usize) + Sync)) };
            job(thread)
        }
        // SAFETY: see `Shared`; no worker reads the job until the round moves on.
        unsafe {
            *self.shared.job.get() = Job {
                call,
                data: &job as *const &(dyn Fn(usize) + Sync) as *const (),
            };
        }
        self.shared.done.store(0, Ordering::Relaxed);
        self.shared.round.fetch_add(1, Ordering::Release);
        self.workers.iter().for_each(Thread::unpark);
        INSIDE.set(true);
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(0)));
        INSIDE.set(false);
        // Even when the caller's share panicked: the workers still read `job`.
        self.wait_for_workers();
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if self.shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("a compute thread panicked (its message is above)");
        }
    }

    fn wait_for_workers(&self) {
        let mut waiter = Waiter::default();
        while self.shared.done.load(Ordering::Acquire) < self.workers.len() {
            waiter.pause();
        }
    }

    /// Splits `0..items` into one contiguous share per thread, which each thread runs front to
    /// back in chunks; a thread done with its own share takes chunks from the back of the
    /// others', so a thread slowed by the rest of the machine does less of the work.
    ///
    /// Contiguous shares rather than one queue of chunks taken in turn: a thread's next chunk
    /// continues the stream it was reading, so what its one-row kernels prefetch past a chunk's
    /// end, and the chunked sweep's prefetch of the next row group, is what it reads next (taken
    /// in turn, the next chunk was mostly the other thread's). On an Intel Xeon (Pythia-410M
    /// shape, 2 threads, one process, passes alternated): 1 row x0.985-0.988, 8 rows
    /// x0.977-0.982, 16 rows x0.970-0.971, a 32-node tree x0.967-0.986.
    pub fn for_chunks(&self, items: usize, task: impl Fn(std::ops::Range<usize>) + Sync) {
        let threads = self.threads();
        let chunk = items.div_ceil(8 * threads).max(1);
        let shares: Vec<Share> = (0..threads)
            .map(|t| Share::new(t * items / threads..(t + 1) * items / threads))
            .collect();
        self.run(&|thread| {
            while let Some(range) = shares[thread].take_front(chunk) {
                task(range);
            }
            for other in (1..threads).map(|k| &shares[(thread + k) % threads]) {
                while let Some(range) = other.take_back(chunk) {
                    task(range);
                }
            }
        });
    }
}

/// The items of one thread's share not yet taken, `front..back` packed into one atomic (front
/// in the high half) so that its owner and a thief can each take from their end. Aligned to
/// its own cache lines: shares side by side in one line cost every take a transfer of the line
/// between cores.
#[repr(align(128))]
struct Share(AtomicU64);

impl Share {
    fn new(items: std::ops::Range<usize>) -> Self {
        assert!(u32::try_from(items.end).is_ok(), "fewer than 2^32 items");
        Self(AtomicU64::new(Self::pack(items.start, items.end)))
    }

    fn pack(front: usize, back: usize) -> u64 {
        (front as u64) << 32 | back as u64
    }

    fn unpack(packed: u64) -> (usize, usize) {
        ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize)
    }

    fn take_front(&self, chunk: usize) -> Option<std::ops::Range<usize>> {
        self.take(|front, back| front..back.min(front + chunk))
    }

    fn take_back(&self, chunk: usize) -> Option<std::ops::Range<usize>> {
        self.take(|front, back| back.saturating_sub(chunk).max(front)..back)
    }

    /// Takes `pick(front, back)`, a non-empty range at one end of what is left, or `None` when
    /// nothing is.
    fn take(
        &self,
        pick: impl Fn(usize, usize) -> std::ops::Range<usize>,
    ) -> Option<std::ops::Range<usize>> {
        let mut seen = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = Self::unpack(seen);
            if front >= back {
                return None;
            }
            let taken = pick(front, back);
            let left = if taken.start == front {
                Self::pack(taken.end, back)
            } else {
                Self::pack(front, taken.start)
            };
            match self
                .0
                .compare_exchange_weak(seen, left, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(taken),
                Err(now) => seen = now,
            }
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.round.fetch_add(1, Ordering::Release);
        self.workers.iter().for_each(Thread::unpark);
    }
}

/// A worker: waits for the next round, runs its share, says it is done.
fn work(shared: &Shared, thread: usize) {
    INSIDE.set(true);
    // Round 0 is the team's start: a round published before this thread got here still runs.
    let mut seen = 0;
    loop {
        let mut waiter = Waiter::default();
        let idle_since = Instant::now();
        loop {
            let round = shared.round.load(Ordering::Acquire);
            if round != seen {
                seen = round;
                break;
            }
            if waiter.spins >= SPINS && idle_since.elapsed() > IDLE_BEFORE_PARK {
                // An unpark between the load above and here leaves a token: no lost wake-up.
                std::thread::park();
            } else {
                waiter.pause();
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: see `Shared`.
        let job = unsafe { *shared.job.get() };
        let ran = std::panic::catch_unwind(|| unsafe { (job.call)(job.data, thread) });
        if ran.is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::Release);
    }
}

/// Spins, then yields the CPU to whatever else is runnable.
#[derive(Default)]
struct Waiter {
    spins: u32,
}

impl Waiter {
    fn pause(&mut self) {
        if self.spins < SPINS {
            self.spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_round_once() {
        // The first round is published at once, most likely before the workers have started.
        let team = Team::new(3);
        for _ in 0..100 {
            let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            team.run(&|thread| {
                counts[thread].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn chunks_cover_every_item_once_and_nesting_runs_inline() {
        let team = Team::new(1);
        let seen: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        team.for_chunks(seen.len(), |range| {
            for i in range {
                // A nested call inside a job runs on this thread alone.
                team.run(&|thread| assert_eq!(thread, 0));
                seen[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn a_slow_thread_runs_its_share_in_order_and_the_others_take_its_back() {
        let team = Team::new(2);
        // Every worker running before the round that counts, so that none finds its share
        // taken before it has started.
        let started = std::sync::Barrier::new(team.threads());
        team.run(&|_| {
            started.wait();
        });
        let items = 1000;
        let seen: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
        let taken_by_one = Mutex::new(Vec::new());
        team.for_chunks(items, |range| {
            // Every chunk takes a while, thread 1's ten times as long.
            let mut pause = Duration::from_millis(2);
            if std::thread::current().name() == Some("dynatree-team-1") {
                taken_by_one.lock().unwrap().push(range.clone());
                pause *= 10;
            }
            std::thread::sleep(pause);
            for i in range {
                seen[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        // Thread 1's share is items 333..666: it starts at its front and goes on from each
        // chunk's end, while the others, long done with theirs, took the rest from the back.
        let taken = taken_by_one.into_inner().unwrap();
        assert_eq!(taken[0].start, items / 3);
        assert!(
            taken.windows(2).all(|w| w[0].end == w[1].start),
            "{taken:?}"
        );
        assert!(taken.last().unwrap().end < 2 * items / 3, "{taken:?}");
    }

    #[test]
    fn a_share_is_taken_from_both_ends_without_overlap() {
        let share = Share::new(10..25);
        assert_eq!(share.take_front(4), Some(10..14));
        assert_eq!(share.take_back(4), Some(21..25));
        assert_eq!(share.take_back(4), Some(17..21));
        assert_eq!(share.take_front(4), Some(14..17));
        assert_eq!(share.take_front(4), None);
        assert_eq!(share.take_back(4), None);
        assert_eq!(Share::new(3..3).take_front(1), None);
    }

    #[test]
    fn a_panicking_worker_is_reported_to_the_caller() {
        let team = Team::new(1);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.run(&|thread| assert_eq!(thread, 0, "worker fails on purpose"))
        }));
        assert!(result.is_err());
        // The team still works afterwards.
        let ran = AtomicUsize::new(0);
        team.run(&|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn parked_workers_wake_for_the_next_round() {
        let team = Team::new(1);
        std::thread::sleep(IDLE_BEFORE_PARK * 3);
        let ran = AtomicUsize::new(0);
        team.run(&|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }
}
