//! Key/value cache whose uncommitted tail may be a token tree.
//!
//! The cache holds a committed prefix (attended by everything) followed by a speculative region:
//! tokens appended since the last commit, each with a parent inside that region (or none, meaning
//! a child of the last committed token). A token attends to the committed prefix and to its own
//! ancestors; its position is the committed length plus its depth. `commit` keeps one root path of
//! the speculative region and moves its keys/values next to the prefix; the rest is discarded.

use candle_core::{DType, Device, Tensor};

use super::error::{ModelError, Result};

/// Parents of a plain chain of `n` new tokens: each the child of the one before.
pub fn chain_parents(n: usize) -> Vec<i32> {
    (0..n as i32).map(|j| j - 1).collect()
}

/// Caches grow by whole chunks of this many token slots, as needed: sized by what a generation
/// uses rather than by its worst case (transformers' dynamic cache also grows with use), while
/// growing rarely enough that copying into the larger buffer stays cheap.
pub const GROWTH_CHUNK: usize = 64;

pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
    capacity: usize,
    committed: usize,
    spec_parents: Vec<Option<usize>>,
    spec_depths: Vec<usize>,
    heads: usize,
    head_dim: usize,
}

/// One layer's keys or values, zeroed. In f32 on the CPU, where the kernels read them, their
/// whole huge pages are asked for before they are first touched, as the weights' are: after a
/// 1500-token prompt (Pythia-410M shape, Intel Xeon, two caches in one process, passes
/// alternated), a 1-row pass took x0.973-0.981 as long, 8 rows x0.971-0.992, a 32-node tree
/// x0.988-0.997 (204 of the cache's 300 MB on huge pages: malloc's buffers do not start on one).
fn zeros(
    shape: (usize, usize, usize, usize),
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    if dtype != DType::F32 || !device.is_cpu() {
        return Tensor::zeros(shape, dtype, device);
    }
    let (a, b, c, d) = shape;
    Tensor::from_vec(super::vec_on_huge_pages(a * b * c * d, 0.0), shape, device)
}

/// Where a block of new tokens goes and what each may attend to.
pub struct BlockLayout {
    /// Rotary position of each new token.
    pub positions: Vec<u32>,
    /// Cache slot of the block's first token.
    pub offset: usize,
    /// Cache length once the block is written.
    pub total: usize,
    /// Additive mask, rows = block tokens, columns = `total` cache slots (0 or -inf);
    /// `None` when every token may attend to every slot.
    pub mask: Option<Vec<f32>>,
}

impl KvCache {
    /// A cache with room for `capacity` tokens, rounded up to whole [`GROWTH_CHUNK`]s.
    pub fn new(
        layers: usize,
        heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let capacity = chunked(capacity);
        let alloc = || zeros((1, heads, capacity, head_dim), dtype, device);
        let keys = (0..layers)
            .map(|_| alloc())
            .collect::<candle_core::Result<_>>()?;
        let values = (0..layers)
            .map(|_| alloc())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            keys,
            values,
            capacity,
            committed: 0,
            spec_parents: Vec::new(),
            spec_depths: Vec::new(),
            heads,
            head_dim,
        })
    }

    pub fn len(&self) -> usize {
        self.committed + self.spec_parents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn committed_len(&self) -> usize {
        self.committed
    }

    pub fn speculative_len(&self) -> usize {
        self.spec_parents.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of the key and value buffers. Capacity only grows, so this is also the peak.
    pub fn allocated_bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Registers a block of new tokens. `parents[j]` is -1 for a child of the last committed
    /// token, else the index of its parent in the speculative region (which the block extends,
    /// so with nothing pending these are indices inside the block).
    pub fn begin_block(&mut self, parents: &[i32]) -> Result<BlockLayout> {
        let offset = self.len();
        let spec_before = self.spec_parents.len();
        for (j, &p) in parents.iter().enumerate() {
            let parent = match p {
                -1 => None,
                p if p >= 0 && (p as usize) < spec_before + j => Some(p as usize),
                p => {
                    return Err(ModelError::Cache(format!(
                        "parent {p} of block token {j} must be -1 or a speculative index below {}",
                        spec_before + j
                    )))
                }
            };
            let depth = parent.map_or(0, |p| self.spec_depths[p] + 1);
            self.spec_parents.push(parent);
            self.spec_depths.push(depth);
        }
        let total = self.len();
        self.ensure_capacity(total)?;
        let positions = (spec_before..spec_before + parents.len())
            .map(|s| (self.committed + self.spec_depths[s]) as u32)
            .collect();
        let mask = self.block_mask(spec_before, parents.len(), total);
        Ok(BlockLayout {
            positions,
            offset,
            total,
            mask,
        })
    }

    fn block_mask(&self, spec_start: usize, rows: usize, total: usize) -> Option<Vec<f32>> {
        let mut mask = vec![f32::NEG_INFINITY; rows * total];
        let mut sees_everything = true;
        for j in 0..rows {
            let row = &mut mask[j * total..(j + 1) * total];
            row[..self.committed].fill(0.0);
            let mut visible = 0;
            let mut node = Some(spec_start + j);
            while let Some(s) = node {
                row[self.committed + s] = 0.0;
                visible += 1;
                node = self.spec_parents[s];
            }
            sees_everything &= self.committed + visible == total;
        }
        (!sees_everything).then_some(mask)
    }

    fn ensure_capacity(&mut self, needed: usize) -> Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = chunked(needed);
        // One buffer at a time, so growing never holds a second copy of the whole cache.
        for tensor in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let grown = zeros(
                (1, self.heads, capacity, self.head_dim),
                tensor.dtype(),
                tensor.device(),
            )?;
            grown.slice_set(tensor, 2, 0)?;
            *tensor = grown;
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes a block's keys/values (`[1, heads, t, head_dim]`) at `offset` and returns the
    /// layer's keys/values up to `total`.
    pub(crate) fn write(
        &mut self,
        layer: usize,
        keys: &Tensor,
        values: &Tensor,
        offset: usize,
        total: usize,
    ) -> Result<(Tensor, Tensor)> {
        self.keys[layer].slice_set(keys, 2, offset)?;
        self.values[layer].slice_set(values, 2, offset)?;
        Ok((
            self.keys[layer].narrow(2, 0, total)?,
            self.values[layer].narrow(2, 0, total)?,
        ))
    }

    /// Keys and values of one layer over the whole cache, `[1, heads, len, head_dim]`.
    pub fn layer(&self, layer: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.keys[layer].narrow(2, 0, self.len())?,
            self.values[layer].narrow(2, 0, self.len())?,
        ))
    }

    /// Keeps the speculative tokens of `path` (a chain from the root, in order) and drops the
    /// rest of the speculative region.
    pub fn commit(&mut self, path: &[usize]) -> Result<()> {
        self.check_root_path(path)?;
        let is_prefix = path.iter().enumerate().all(|(i, &s)| i == s);
        if !is_prefix {
            // Slots in the whole (contiguous) buffer, as index_select needs.
            let slots: Vec<u32> = path.iter().map(|&s| (self.committed + s) as u32).collect();
            let index = Tensor::from_vec(slots, path.len(), self.keys[0].device())?;
            for tensor in self.keys.iter_mut().chain(self.values.iter_mut()) {
                let kept = tensor.index_select(&index, 2)?;
                tensor.slice_set(&kept, 2, self.committed)?;
            }
        }
        self.committed += path.len();
        self.spec_parents.clear();
        self.spec_depths.clear();
        Ok(())
    }

    /// Commits the whole speculative region, which must be a single chain.
    pub fn commit_all(&mut self) -> Result<()> {
        let all: Vec<usize> = (0..self.spec_parents.len()).collect();
        self.commit(&all)
    }

    /// Drops the speculative region and every committed token from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.committed = self.committed.min(len);
        self.spec_parents.clear();
        self.spec_depths.clear();
    }

    fn check_root_path(&self, path: &[usize]) -> Result<()> {
        let mut expected_parent = None;
        for &s in path {
            if s >= self.spec_parents.len() || self.spec_parents[s] != expected_parent {
                return Err(ModelError::Cache(format!(
                    "commit path {path:?} is not a chain from the root of the speculative region"
                )));
            }
            expected_parent = Some(s);
        }
        Ok(())
    }
}

/// `tokens` rounded up to whole growth chunks (at least one).
fn chunked(tokens: usize) -> usize {
    tokens.max(1).div_ceil(GROWTH_CHUNK) * GROWTH_CHUNK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> KvCache {
        KvCache::new(1, 1, 2, 4, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn a_new_cache_holds_zeros_of_its_dtype() {
        // 4 MiB per f32 buffer: past a huge page, so the f32 path asks for them.
        for dtype in [DType::F32, DType::BF16] {
            let cache = KvCache::new(2, 16, 64, 1000, dtype, &Device::Cpu).unwrap();
            for buffer in cache.keys.iter().chain(&cache.values) {
                assert_eq!(buffer.dims(), [1, 16, 1024, 64]);
                assert_eq!(buffer.dtype(), dtype);
                let data: Vec<f32> = buffer
                    .to_dtype(DType::F32)
                    .and_then(|b| b.flatten_all())
                    .and_then(|b| b.to_vec1())
                    .unwrap();
                assert!(data.iter().all(|&v| v == 0.0));
            }
        }
    }

    #[test]
    fn chain_block_on_empty_cache_is_causal() {
        let mut c = cache();
        let layout = c.begin_block(&[-1, 0, 1]).unwrap();
        assert_eq!(layout.positions, vec![0, 1, 2]);
        let inf = f32::NEG_INFINITY;
        let expected = vec![0.0, inf, inf, 0.0, 0.0, inf, 0.0, 0.0, 0.0];
        assert_eq!(layout.mask.unwrap(), expected);
    }

    #[test]
    fn single_token_after_chain_needs_no_mask() {
        let mut c = cache();
        c.begin_block(&[-1, 0]).unwrap();
        c.commit_all().unwrap();
        let layout = c.begin_block(&[-1]).unwrap();
        assert_eq!(layout.positions, vec![2]);
        assert!(layout.mask.is_none());
    }

    #[test]
    fn tree_positions_follow_depth_and_mask_hides_siblings() {
        let mut c = cache();
        c.begin_block(&[-1]).unwrap();
        c.commit_all().unwrap();
        // Two children of the committed token, then a child of the second.
        let layout = c.begin_block(&[-1, -1, 1]).unwrap();
        assert_eq!(layout.positions, vec![1, 1, 2]);
        let inf = f32::NEG_INFINITY;
        let mask = layout.mask.unwrap();
        assert_eq!(&mask[8..12], &[0.0, inf, 0.0, 0.0]);
        assert_eq!(c.capacity(), GROWTH_CHUNK);
    }

    #[test]
    fn rejects_forward_parent_and_broken_commit_path() {
        let mut c = cache();
        assert!(c.begin_block(&[1, -1]).is_err());
        let mut c = cache();
        c.begin_block(&[-1, -1, 0]).unwrap();
        assert!(c.commit(&[1, 2]).is_err());
        assert!(c.commit(&[0, 2]).is_ok());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn grows_past_capacity_keeping_contents() {
        let mut c = cache();
        let layout = c.begin_block(&[-1, 0, 1]).unwrap();
        let kv = Tensor::arange(0f32, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 2))
            .unwrap();
        c.write(0, &kv, &kv, layout.offset, layout.total).unwrap();
        c.commit_all().unwrap();
        c.begin_block(&vec![-1; GROWTH_CHUNK]).unwrap();
        assert_eq!(c.capacity(), 2 * GROWTH_CHUNK);
        assert_eq!(c.allocated_bytes(), 2 * 2 * GROWTH_CHUNK * 2 * 4);
        let (k, _) = c.layer(0).unwrap();
        let first: Vec<f32> = k
            .narrow(2, 0, 3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(first, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}
