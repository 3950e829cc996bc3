//! Peak GPU memory, reset before each generation like `torch.cuda.reset_peak_memory_stats`.
//!
//! candle allocates device memory with `cuMemAllocAsync` from the device's current memory pool
//! and frees it with `cuMemFreeAsync`, without a cache of its own. The pool keeps two high-water
//! marks, reset by writing 0 (they restart from what is in use now):
//! - `CU_MEMPOOL_ATTR_USED_MEM_HIGH`: bytes handed out to allocations, what
//!   `torch.cuda.max_memory_allocated` reports ([`GpuPeaks::allocated_bytes`]);
//! - `CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH`: bytes the pool held from the device, allocations
//!   plus the pool's slack, like `torch.cuda.max_memory_reserved` ([`GpuPeaks::reserved_bytes`]).
//!
//! The stream is synchronised before each reset and read, so that the marks cover every
//! allocation the generation queued. A device without memory pools allocates with `cuMemAlloc`,
//! which no pool counts: that is "not measured", never a host figure.

use serde::{Deserialize, Serialize};

/// The high-water marks of one generation, both models' weights included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuPeaks {
    pub allocated_bytes: u64,
    pub reserved_bytes: u64,
}

/// One of the pool's two high-water marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighWater {
    /// Bytes handed out to allocations.
    Used,
    /// Bytes the pool reserved from the device.
    Reserved,
}

/// A memory pool's high-water marks: the CUDA driver's, or a stand-in in tests.
pub trait Pool {
    /// Waits for the work queued on the stream the models allocate on.
    fn synchronize(&self) -> Result<(), String>;
    fn high(&self, which: HighWater) -> Result<u64, String>;
    fn reset_high(&self, which: HighWater) -> Result<(), String>;
}

/// Reads and resets a pool's high-water marks.
pub struct Probe {
    pool: Box<dyn Pool>,
}

impl Probe {
    pub fn new(pool: Box<dyn Pool>) -> Self {
        Self { pool }
    }

    /// The probe of `device`'s memory: `Ok(None)` on the CPU (the host heap counts there),
    /// `Err` with the reason where a CUDA device's memory cannot be measured.
    pub fn for_device(device: &candle_core::Device) -> Result<Option<Self>, String> {
        match device {
            candle_core::Device::Cpu => Ok(None),
            #[cfg(feature = "cuda")]
            candle_core::Device::Cuda(cuda) => {
                cuda_pool::DriverPool::of(cuda).map(|pool| Some(Self::new(Box::new(pool))))
            }
            _ => Err("this build measures memory on the CPU and on CUDA only".to_string()),
        }
    }

    /// Starts a window: both marks restart from the bytes in use now.
    pub fn reset(&self) -> Result<(), String> {
        self.pool.synchronize()?;
        self.pool.reset_high(HighWater::Used)?;
        self.pool.reset_high(HighWater::Reserved)
    }

    /// The marks since the last [`Probe::reset`]. A pool never hands out more than it holds,
    /// so a reading that says otherwise is refused rather than recorded.
    pub fn read(&self) -> Result<GpuPeaks, String> {
        self.pool.synchronize()?;
        let allocated_bytes = self.pool.high(HighWater::Used)?;
        let reserved_bytes = self.pool.high(HighWater::Reserved)?;
        if allocated_bytes > reserved_bytes {
            return Err(format!(
                "inconsistent pool reading: {allocated_bytes} bytes allocated but {reserved_bytes} reserved"
            ));
        }
        Ok(GpuPeaks {
            allocated_bytes,
            reserved_bytes,
        })
    }
}

/// How far the allocated mark may rise beyond a known allocation (alignment, the tensor's own
/// bookkeeping on the device).
pub const KNOWN_ALLOCATION_SLACK: u64 = 2 << 20;

/// What a known allocation did to the allocated high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAllocation {
    pub requested: u64,
    /// How much the mark rose while the allocation was live.
    pub rise: u64,
}

impl KnownAllocation {
    /// From the marks read just before and while `requested` bytes were allocated.
    pub fn new(requested: u64, before: u64, during: u64) -> Self {
        Self {
            requested,
            rise: during.saturating_sub(before),
        }
    }

    /// The mark rose by the allocation, and by at most [`KNOWN_ALLOCATION_SLACK`] more.
    pub fn passes(&self) -> bool {
        self.rise >= self.requested && self.rise - self.requested <= KNOWN_ALLOCATION_SLACK
    }
}

/// Allocates `bytes` on `device` and reads how the probe's allocated mark moved.
pub fn check_known_allocation(
    probe: &Probe,
    device: &candle_core::Device,
    bytes: usize,
) -> Result<KnownAllocation, String> {
    probe.reset()?;
    let before = probe.read()?.allocated_bytes;
    let floats = bytes.div_ceil(4);
    let tensor = candle_core::Tensor::zeros(floats, candle_core::DType::F32, device)
        .map_err(|e| format!("allocating {bytes} bytes: {e}"))?;
    let during = probe.read()?.allocated_bytes;
    drop(tensor);
    Ok(KnownAllocation::new(floats as u64 * 4, before, during))
}

#[cfg(feature = "cuda")]
mod cuda_pool {
    use std::sync::Arc;

    use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaStream};

    use super::{HighWater, Pool};

    /// The device's current pool, the one `cuMemAllocAsync` draws from.
    pub(super) struct DriverPool {
        stream: Arc<CudaStream>,
        pool: sys::CUmemoryPool,
    }

    impl DriverPool {
        pub(super) fn of(device: &candle_core::CudaDevice) -> Result<Self, String> {
            let stream = device.cuda_stream();
            let context = stream.context();
            if !context.has_async_alloc() {
                return Err(format!(
                    "GPU memory not measured: device {} has no memory pools (CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 0), so candle allocates outside any pool",
                    context.ordinal()
                ));
            }
            context.bind_to_thread().map_err(|e| e.to_string())?;
            // SAFETY: the device comes from a live context.
            let pool = unsafe { result::device::get_mem_pool(context.cu_device()) }
                .map_err(|e| format!("cuDeviceGetMemPool: {e}"))?;
            Ok(Self { stream, pool })
        }
    }

    fn attribute(which: HighWater) -> sys::CUmemPool_attribute {
        match which {
            HighWater::Used => sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            HighWater::Reserved => sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH,
        }
    }

    impl Pool for DriverPool {
        fn synchronize(&self) -> Result<(), String> {
            self.stream.synchronize().map_err(|e| e.to_string())
        }

        fn high(&self, which: HighWater) -> Result<u64, String> {
            let mut value: u64 = 0;
            // SAFETY: the pool is the device's; both attributes are cuuint64_t.
            unsafe {
                result::mem_pool::get_attribute(
                    self.pool,
                    attribute(which),
                    (&raw mut value).cast(),
                )
            }
            .map_err(|e| format!("cuMemPoolGetAttribute({which:?}): {e}"))?;
            Ok(value)
        }

        fn reset_high(&self, which: HighWater) -> Result<(), String> {
            let mut zero: u64 = 0;
            // SAFETY: as above; writing 0 is the documented reset of a high-water mark.
            unsafe {
                result::mem_pool::set_attribute(self.pool, attribute(which), (&raw mut zero).cast())
            }
            .map_err(|e| format!("cuMemPoolSetAttribute({which:?}): {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A pool as the driver keeps one: bytes in use and held, and their marks since a reset.
    #[derive(Default)]
    struct Fake {
        used: u64,
        reserved: u64,
        used_high: u64,
        reserved_high: u64,
        syncs: usize,
        fail: Option<&'static str>,
    }

    impl Fake {
        fn alloc(&mut self, bytes: u64) {
            self.used += bytes;
            // The pool grows in 32 MiB steps, like the driver's default granularity.
            while self.reserved < self.used {
                self.reserved += 32 << 20;
            }
            self.used_high = self.used_high.max(self.used);
            self.reserved_high = self.reserved_high.max(self.reserved);
        }

        fn free(&mut self, bytes: u64) {
            self.used -= bytes;
        }
    }

    struct Shared(Rc<RefCell<Fake>>);

    impl Pool for Shared {
        fn synchronize(&self) -> Result<(), String> {
            self.0.borrow_mut().syncs += 1;
            Ok(())
        }

        fn high(&self, which: HighWater) -> Result<u64, String> {
            let fake = self.0.borrow();
            if let Some(error) = fake.fail {
                return Err(error.to_string());
            }
            Ok(match which {
                HighWater::Used => fake.used_high,
                HighWater::Reserved => fake.reserved_high,
            })
        }

        fn reset_high(&self, which: HighWater) -> Result<(), String> {
            let mut fake = self.0.borrow_mut();
            match which {
                HighWater::Used => fake.used_high = fake.used,
                HighWater::Reserved => fake.reserved_high = fake.reserved,
            }
            Ok(())
        }
    }

    fn fake_probe() -> (Probe, Rc<RefCell<Fake>>) {
        let fake = Rc::new(RefCell::new(Fake::default()));
        (Probe::new(Box::new(Shared(fake.clone()))), fake)
    }

    #[test]
    fn a_window_counts_what_was_live_at_its_start_and_its_own_peak() {
        let (probe, pool) = fake_probe();
        pool.borrow_mut().alloc(1000 << 20); // weights, live for the whole run
        pool.borrow_mut().alloc(500 << 20); // an earlier generation's peak
        pool.borrow_mut().free(500 << 20);
        probe.reset().unwrap();
        pool.borrow_mut().alloc(100 << 20);
        pool.borrow_mut().free(100 << 20);
        let peaks = probe.read().unwrap();
        // The earlier, larger peak is forgotten; the weights are not.
        assert_eq!(peaks.allocated_bytes, 1100 << 20);
        assert_eq!(peaks.reserved_bytes, 1504 << 20);
        assert_eq!(pool.borrow().syncs, 2, "synchronised before reset and read");
    }

    #[test]
    fn driver_errors_and_impossible_readings_are_not_figures() {
        let (probe, pool) = fake_probe();
        pool.borrow_mut().fail = Some("CUDA_ERROR_INVALID_VALUE");
        assert_eq!(probe.read().unwrap_err(), "CUDA_ERROR_INVALID_VALUE");
        let (probe, pool) = fake_probe();
        pool.borrow_mut().used_high = 10;
        assert!(probe
            .read()
            .unwrap_err()
            .contains("10 bytes allocated but 0 reserved"));
    }

    #[test]
    fn a_known_allocation_passes_only_within_its_slack() {
        let (probe, pool) = fake_probe();
        pool.borrow_mut().alloc(700 << 20);
        probe.reset().unwrap();
        let before = probe.read().unwrap().allocated_bytes;
        pool.borrow_mut().alloc((256 << 20) + 512);
        let during = probe.read().unwrap().allocated_bytes;
        let check = KnownAllocation::new(256 << 20, before, during);
        assert_eq!(check.rise, (256 << 20) + 512);
        assert!(check.passes());
        // Too little (the pool did not count it) or far too much both fail.
        assert!(!KnownAllocation::new(256 << 20, before, before + (255 << 20)).passes());
        assert!(!KnownAllocation::new(256 << 20, before, before + (259 << 20)).passes());
        // A mark that fell (a reset in between) is a rise of zero, not a wrap-around.
        assert_eq!(KnownAllocation::new(1, 10, 5).rise, 0);
    }

    #[test]
    fn the_cpu_has_no_gpu_probe() {
        assert!(Probe::for_device(&candle_core::Device::Cpu)
            .unwrap()
            .is_none());
    }
}
