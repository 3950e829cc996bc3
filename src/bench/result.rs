//! The result file of one run (`runs/<id>.json`): written by the runner, read by aggregation.
//! Adding a metric is a field here; the store adds `schema_version` and `content_sha256`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::provenance::Provenance;
use super::record::{Record, Summary};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub id: String,
    /// Everything that determines the run; `id` is its hash.
    pub config: Value,
    pub manifest: ManifestInfo,
    pub provenance: Provenance,
    pub prompts: Vec<PromptInfo>,
    pub records: Vec<Record>,
    pub summary: Summary,
    pub memory: MemorySummary,
    /// Every record's output equals AR's on the same prompt. Required: a result without it is
    /// not reported.
    pub lossless: bool,
    pub lossless_check: LosslessCheck,
}

impl RunResult {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .expect("a result serializes: string keys, finite or null numbers")
    }

    /// Reads a stored result; an error names the first field that is missing or mistyped.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInfo {
    pub path: PathBuf,
    pub experiment: String,
    pub dataset_label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptInfo {
    pub sha256: String,
    pub tokens: usize,
}

/// What each record's output was compared with, and how many matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LosslessCheck {
    /// `ar_run` (the stored AR baseline's outputs) or `ar_untimed` (AR generated just before,
    /// untimed: for an AR run this checks that its measured repeats are deterministic).
    pub reference: String,
    pub generations_checked: usize,
    pub generations_matching: usize,
}

/// What a memory figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Live bytes of the process heap (the counting global allocator), on a CPU run.
    HostHeap,
    /// Bytes allocated on the GPU, as `torch.cuda.max_memory_allocated` counts them.
    GpuAllocated,
}

impl MemoryKind {
    /// For captions and axes: what the number is.
    pub fn describe(self) -> &'static str {
        match self {
            Self::HostHeap => "host heap high-water mark",
            Self::GpuAllocated => "GPU memory allocated, high-water mark",
        }
    }
}

/// The run's peak memory and what it is made of, all from its largest generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySummary {
    pub kind: MemoryKind,
    /// The device whose memory `kind` names, e.g. `cpu` or `cuda`.
    pub device: String,
    /// The high-water mark, reset before each generation with both models loaded; `None` when
    /// this build cannot measure `kind` on this device.
    pub peak_bytes: Option<u64>,
    pub weights_target_bytes: u64,
    pub weights_draft_bytes: u64,
    /// Key/value caches of the generation with the highest peak.
    pub kv_target_bytes: u64,
    pub kv_draft_bytes: u64,
    /// Activations, logits, tree bookkeeping and whatever else was live: peak − the rest.
    pub rest_bytes: Option<i64>,
    /// Peak resident set of the process, for reference (not reset-able on every system).
    pub peak_rss_kib: Option<u64>,
    /// GPU runs: the pool's reserved high-water mark of the same generation, for reference
    /// (allocations plus the pool's slack, like `torch.cuda.max_memory_reserved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_reserved_peak_bytes: Option<u64>,
    /// Why `peak_bytes` is missing, when this build or device cannot measure `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
}

impl MemorySummary {
    /// The breakdown of the record with the highest peak (or the largest caches when no
    /// peak was measured).
    pub fn of(records: &[Record], kind: MemoryKind, device: &str, weights: (usize, usize)) -> Self {
        let peak_of = |r: &Record| match kind {
            MemoryKind::HostHeap => r.peak_heap_bytes.map(|b| b as u64),
            MemoryKind::GpuAllocated => r.gpu_peaks.map(|p| p.allocated_bytes),
        };
        let largest = records
            .iter()
            .max_by_key(|r| (peak_of(r), r.kv_target_bytes + r.kv_draft_bytes));
        let peak_bytes = largest.and_then(peak_of);
        let (kv_target, kv_draft) =
            largest.map_or((0, 0), |r| (r.kv_target_bytes, r.kv_draft_bytes));
        let known = (weights.0 + weights.1 + kv_target + kv_draft) as i64;
        Self {
            kind,
            device: device.to_string(),
            peak_bytes,
            weights_target_bytes: weights.0 as u64,
            weights_draft_bytes: weights.1 as u64,
            kv_target_bytes: kv_target as u64,
            kv_draft_bytes: kv_draft as u64,
            rest_bytes: peak_bytes.map(|p| p as i64 - known),
            peak_rss_kib: records.iter().filter_map(|r| r.peak_rss_kib).max(),
            gpu_reserved_peak_bytes: largest
                .and_then(|r| r.gpu_peaks)
                .filter(|_| kind == MemoryKind::GpuAllocated)
                .map(|p| p.reserved_bytes),
            not_measured: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::gpu_memory::GpuPeaks;

    fn record(heap: Option<usize>, gpu: Option<(u64, u64)>, kv: usize) -> Record {
        Record {
            prompt_index: 0,
            prompt_sha256: String::new(),
            prompt_tokens: 4,
            repeat: 0,
            new_tokens: 8,
            wall_s: 1.0,
            ttft_ms: 1.0,
            tpot_ms: None,
            tokens_per_s: 8.0,
            target_passes: 8,
            rounds: 0,
            drafted: 0,
            accepted: 0,
            paper_acceptance: None,
            draft_s: 0.0,
            verify_s: 0.0,
            depth_offered: Vec::new(),
            depth_accepted: Vec::new(),
            output_sha256: String::new(),
            lossless: true,
            peak_heap_bytes: heap,
            peak_rss_kib: None,
            gpu_peaks: gpu.map(|(allocated_bytes, reserved_bytes)| GpuPeaks {
                allocated_bytes,
                reserved_bytes,
            }),
            kv_target_bytes: kv,
            kv_draft_bytes: 0,
        }
    }

    /// A GPU run's figure is the pool's allocated mark of its largest generation, with that
    /// generation's reserved mark and caches; the host heap plays no part.
    #[test]
    fn gpu_runs_take_the_allocated_mark_of_their_largest_generation() {
        let records = [
            record(Some(999_999), Some((5_000, 8_000)), 100),
            record(Some(1), Some((7_000, 9_000)), 300),
        ];
        let summary = MemorySummary::of(&records, MemoryKind::GpuAllocated, "cuda", (4_000, 1_000));
        assert_eq!(summary.peak_bytes, Some(7_000));
        assert_eq!(summary.gpu_reserved_peak_bytes, Some(9_000));
        assert_eq!(summary.kv_target_bytes, 300);
        assert_eq!(summary.rest_bytes, Some(7_000 - 4_000 - 1_000 - 300));
        let cpu = MemorySummary::of(&records, MemoryKind::HostHeap, "cpu", (4_000, 1_000));
        assert_eq!(cpu.peak_bytes, Some(999_999));
        assert_eq!(cpu.gpu_reserved_peak_bytes, None);
    }

    /// A CPU record has no GPU field at all, so CPU results keep their exact form.
    #[test]
    fn cpu_records_serialise_without_gpu_fields() {
        let value = serde_json::to_value(record(Some(10), None, 0)).unwrap();
        assert!(value.get("gpu_peaks").is_none());
        let summary = MemorySummary::of(
            &[record(Some(10), None, 0)],
            MemoryKind::HostHeap,
            "cpu",
            (0, 0),
        );
        let value = serde_json::to_value(summary).unwrap();
        assert!(
            value.get("gpu_reserved_peak_bytes").is_none() && value.get("not_measured").is_none()
        );
    }
}
