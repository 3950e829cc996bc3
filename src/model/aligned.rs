//! f32 buffers that start on a cache line: a 64-byte load that straddles two lines costs two,
//! and the AVX-512 kernels issue one per 16 floats (measured here: 5.3 against 4.1 G
//! multiply-adds/s per core with the same loads aligned and not).
//!
//! Weights go on transparent huge pages where the kernel grants them: a decoding step streams
//! every weight once, and on 4 KiB pages that is a TLB miss and a new page for the hardware
//! prefetchers every 64 lines. On Pythia-410M's shape (Zen 4, 2 threads, one process passing
//! over both copies of the weights in turn) a 1-row pass ran 2-7% faster on them, an 8-row
//! pass 3%, a 32-node tree 0-2%. Where the kernel must clear fresh huge pages, a load costs more
//! (0.7-1.5 s more for that shape on a VM). Each weight buffer starts on a huge page and is
//! cleared of earlier pages ([`HugePages`]): without, that shape's weights got 0.99 of their
//! 1.42 GB on huge pages, with, 1.41, and AR decoded 4-9% faster (Intel Xeon, separate
//! processes alternated: 48.9-50.7 against 52.1-55.9 ms per token).

/// One cache line of floats.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A `[f32]` whose first element is 64-byte aligned.
#[derive(Default)]
pub(crate) struct AlignedF32 {
    lines: Vec<Line>,
    /// Holds the floats instead of `lines` for a buffer on huge pages.
    huge: Option<HugePages>,
    len: usize,
}

impl AlignedF32 {
    pub(crate) fn zeros(len: usize) -> Self {
        Self {
            lines: vec![Line::default(); len.div_ceil(16)],
            huge: None,
            len,
        }
    }

    /// Zeros on transparent huge pages where the kernel grants them (Linux with THP in
    /// `madvise` or `always` mode; elsewhere ordinary pages), for buffers read end to end
    /// many times: the model's weights. Every whole huge page of the buffer can be one (see
    /// [`HugePages`]).
    pub(crate) fn zeros_on_huge_pages(len: usize) -> Self {
        match HugePages::zeros(len) {
            Some(huge) => Self {
                lines: Vec::new(),
                huge: Some(huge),
                len,
            },
            None => Self::zeros(len),
        }
    }

    /// A copy of `data` that starts on a cache line, on huge pages as [`Self::zeros_on_huge_pages`].
    pub(crate) fn from_slice(data: &[f32]) -> Self {
        let mut buffer = Self::zeros_on_huge_pages(data.len());
        buffer.as_mut_slice().copy_from_slice(data);
        buffer
    }

    /// Makes this buffer `data`'s rows of `width` floats, each `stride` floats after the one
    /// before (the gaps are zeros or older data, never read), reusing its memory when it is
    /// large enough: a product's inputs go through one such buffer per thread, pass after pass.
    pub(crate) fn assign_rows(&mut self, data: &[f32], width: usize, stride: usize) {
        assert!(width > 0 && stride >= width && data.len().is_multiple_of(width));
        self.resize(data.len() / width * stride);
        let rows = self.as_mut_slice().chunks_exact_mut(stride);
        for (row, src) in rows.zip(data.chunks_exact(width)) {
            row[..width].copy_from_slice(src);
        }
    }

    fn resize(&mut self, len: usize) {
        let lines = len.div_ceil(16);
        if self.huge.is_some() || self.lines.len() < lines {
            self.huge = None;
            self.lines = vec![Line::default(); lines];
        }
        self.len = len;
    }

    /// The first float: of the huge pages when the buffer has them, else of the lines.
    fn start(&self) -> *const f32 {
        match &self.huge {
            Some(huge) => huge.start.as_ptr().cast_const(),
            None => self.lines.as_ptr().cast(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over 16 f32 with no padding, and `len <= 16 * lines.len()`;
        // huge pages hold at least `len` floats, initialised when made.
        unsafe { std::slice::from_raw_parts(self.start(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        let start = match &mut self.huge {
            Some(huge) => huge.start.as_ptr(),
            None => self.lines.as_mut_ptr().cast(),
        };
        // SAFETY: as in `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(start, self.len) }
    }
}

/// The size of a huge page on x86-64 and most aarch64 kernels; a smaller buffer cannot hold one.
const HUGE_PAGE: usize = 2 << 20;

/// One buffer's memory from the global allocator (which counts it, as it counts every other
/// buffer), starting on a huge-page boundary and cleared of whatever pages were there before.
/// - Aligned: each whole huge page of the buffer can be one, where a buffer starting anywhere
///   loses its first and last partial ones (half of a 4 MB matrix).
/// - Cleared: memory the allocator reuses may have been faulted in on 4 KiB pages before (by
///   the tensors a load frees), and advice does not move pages already there. Its whole huge
///   pages are dropped (`MADV_DONTNEED`: they read as zeros again) before the advice.
///
/// The part past the last whole huge page stays on 4 KiB pages, so that the buffer takes no
/// more memory than it holds.
struct HugePages {
    start: std::ptr::NonNull<f32>,
    layout: std::alloc::Layout,
}

// SAFETY: the memory is owned by this value alone; access goes through `AlignedF32`'s borrows.
unsafe impl Send for HugePages {}
unsafe impl Sync for HugePages {}

impl HugePages {
    /// `len` zeros, advised onto huge pages; `None` where they are less than one huge page, the
    /// system is not Linux, or the allocation fails (the caller falls back to ordinary memory).
    #[cfg(target_os = "linux")]
    fn zeros(len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<f32>())?;
        if bytes < HUGE_PAGE {
            return None;
        }
        let layout = std::alloc::Layout::from_size_align(bytes, HUGE_PAGE).ok()?;
        // SAFETY: the layout's size is not zero.
        let start = std::ptr::NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        let whole = bytes / HUGE_PAGE * HUGE_PAGE;
        // SAFETY: [start, start + whole) lies in the allocation just made, which nothing else
        // uses; dropping its pages only makes them read as zeros, which the write below
        // makes them anyway.
        unsafe {
            let range = start.as_ptr().cast::<libc::c_void>();
            libc::madvise(range, whole, libc::MADV_DONTNEED);
            libc::madvise(range, whole, libc::MADV_HUGEPAGE);
        }
        let start = start.cast::<f32>();
        // SAFETY: the allocation holds `len` floats; this initialises them, faulting in the
        // advised pages.
        unsafe { std::ptr::write_bytes(start.as_ptr(), 0, len) };
        Some(Self { start, layout })
    }

    #[cfg(not(target_os = "linux"))]
    fn zeros(_len: usize) -> Option<Self> {
        None
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        // SAFETY: `start` came from `alloc` with this layout and nothing borrows it any more.
        unsafe { std::alloc::dealloc(self.start.as_ptr().cast(), self.layout) };
    }
}

/// `len` copies of `value` in a `Vec` whose whole huge pages were asked for before it was first
/// touched (see [`advise_huge_pages`]): for large buffers read end to end, such as the KV cache
/// or the bench's read-ceiling buffer, which must be `Vec`s.
pub fn vec_on_huge_pages(len: usize, value: f32) -> Vec<f32> {
    let mut data: Vec<f32> = Vec::with_capacity(len);
    advise_huge_pages(data.spare_capacity_mut());
    data.resize(len, value);
    data
}

/// Asks the kernel to back `memory`'s whole 4 KiB pages with huge pages. Only a hint: where
/// THP is off, or on other systems, the memory stays on ordinary pages and nothing changes.
/// `madvise` refuses a start that is not page-aligned, and a large allocation from malloc starts
/// 16 bytes into its page, so the range is rounded inwards to whole pages.
fn advise_huge_pages<T>(memory: &mut [T]) {
    let (start, bytes) = (memory.as_mut_ptr() as usize, std::mem::size_of_val(memory));
    if bytes < HUGE_PAGE {
        return;
    }
    let page = 4096;
    let first = start.next_multiple_of(page);
    let end = (start + bytes) / page * page;
    #[cfg(target_os = "linux")]
    // SAFETY: [first, end) lies inside `memory`, which this process owns; the advice changes
    // how it is backed, never its contents.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (first, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vec_on_huge_pages_holds_its_value() {
        // 3 MiB: past a huge page, so the advice is given; 0 and 1: below it.
        for len in [0, 1, 3 << 18] {
            let data = vec_on_huge_pages(len, 1.5);
            assert_eq!(data.len(), len);
            assert!(data.iter().all(|&v| v == 1.5));
        }
    }

    #[test]
    fn starts_on_a_cache_line_and_holds_the_data() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let buffer = AlignedF32::from_slice(&data);
            assert_eq!(buffer.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(buffer.as_slice(), &data[..]);
        }
    }

    #[test]
    fn huge_page_zeros_are_zeros_on_a_cache_line() {
        for len in [0, 17, HUGE_PAGE / 4 + 3] {
            let buffer = AlignedF32::zeros_on_huge_pages(len);
            assert_eq!(buffer.as_slice().as_ptr() as usize % 64, 0);
            assert_eq!(buffer.as_slice().len(), len);
            assert!(buffer.as_slice().iter().all(|&x| x == 0.0));
        }
    }

    /// The advice lands on the buffer's memory: the kernel marks its mapping `hg` in
    /// `/proc/self/smaps` whatever THP's mode (a kernel built without THP has no such flag).
    /// The buffer starts on a huge-page boundary, so that its first and last whole huge pages
    /// are both advised.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_buffer_is_advised_onto_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            eprintln!("this kernel has no transparent huge pages: nothing to check");
            return;
        }
        // Two huge pages and a few floats.
        let len = HUGE_PAGE / 2 + 5;
        let mut buffer = AlignedF32::zeros_on_huge_pages(len);
        let start = buffer.as_slice().as_ptr() as usize;
        assert_eq!(start % HUGE_PAGE, 0, "the buffer starts at {start:#x}");
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        for at in [start, start + 2 * HUGE_PAGE - 4] {
            let flags = mapping_flags(&smaps, at);
            assert!(flags.contains(&"hg"), "VmFlags at {at:#x}: {flags:?}");
        }
        let past = mapping_flags(&smaps, start + 2 * HUGE_PAGE);
        assert!(!past.contains(&"hg"), "the tail is advised too: {past:?}");
        buffer.as_mut_slice()[len - 1] = 3.0;
        assert_eq!(buffer.as_slice()[len - 1], 3.0);
        assert!(buffer.as_slice()[..len - 1].iter().all(|&x| x == 0.0));
    }

    /// The `VmFlags` of the mapping in `smaps` that holds `address`.
    #[cfg(target_os = "linux")]
    fn mapping_flags(smaps: &str, address: usize) -> Vec<&str> {
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((from, to)) = range.split_once('-') {
                    if let (Ok(from), Ok(to)) = (
                        usize::from_str_radix(from, 16),
                        usize::from_str_radix(to, 16),
                    ) {
                        inside = (from..to).contains(&address);
                        continue;
                    }
                }
            }
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                if inside {
                    return flags.split_whitespace().collect();
                }
            }
        }
        Vec::new()
    }

    #[test]
    fn rows_can_reuse_a_buffer_made_on_huge_pages() {
        let mut buffer = AlignedF32::zeros_on_huge_pages(HUGE_PAGE / 4);
        let data: Vec<f32> = (0..6).map(|i| i as f32).collect();
        buffer.assign_rows(&data, 3, 4);
        assert_eq!(buffer.as_slice().len(), 8);
        assert_eq!(&buffer.as_slice()[4..7], &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn rows_land_a_stride_apart() {
        let data: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let mut buffer = AlignedF32::from_slice(&[9.0; 3]);
        buffer.assign_rows(&data, 3, 5);
        let rows: Vec<&[f32]> = buffer.as_slice().chunks(5).map(|r| &r[..3]).collect();
        assert_eq!(rows, [&[0.0, 1.0, 2.0][..], &[3.0, 4.0, 5.0][..]]);
    }
}
