//! Per-generation records and the summary of a run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::gpu_memory::GpuPeaks;
use super::memory;
use super::stats::Estimate;
use crate::decode::metrics::total_seconds;
use crate::decode::{Generation, Method, Metrics};

/// One measured generation (a prompt and a repeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub prompt_index: usize,
    pub prompt_sha256: String,
    pub prompt_tokens: usize,
    pub repeat: usize,
    pub new_tokens: usize,
    pub wall_s: f64,
    pub ttft_ms: f64,
    pub tpot_ms: Option<f64>,
    pub tokens_per_s: f64,
    pub target_passes: usize,
    /// Verification rounds (0 for AR).
    pub rounds: usize,
    pub drafted: usize,
    /// Drafted tokens the target accepted, the target's own token of each round not counted.
    pub accepted: usize,
    /// The authors' acceptance: (accepted + rounds) / Σ slots over rounds, slots = K, D + 2 or
    /// D0 + 2 ([`Method::paper_acceptance_slots`]); it can exceed 1.
    pub paper_acceptance: Option<f64>,
    pub draft_s: f64,
    pub verify_s: f64,
    /// Rounds whose drafted tree reached depth d (index d - 1), and those whose accepted path did.
    pub depth_offered: Vec<usize>,
    pub depth_accepted: Vec<usize>,
    pub output_sha256: String,
    /// The output equals AR's on this prompt (for AR: an untimed AR generation's).
    pub lossless: bool,
    /// Host heap high-water mark of the generation, both models' weights included.
    pub peak_heap_bytes: Option<usize>,
    pub peak_rss_kib: Option<u64>,
    /// The CUDA memory pool's high-water marks of the generation (GPU runs; `gpu_memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_peaks: Option<GpuPeaks>,
    /// Bytes of the target's and the draft's key/value caches at their largest.
    pub kv_target_bytes: usize,
    pub kv_draft_bytes: usize,
}

/// sha256 of the output tokens as little-endian u32s.
pub fn tokens_sha256(tokens: &[u32]) -> String {
    let mut hasher = Sha256::new();
    for t in tokens {
        hasher.update(t.to_le_bytes());
    }
    format!("{:x}", hasher.finalize())
}

pub struct Measured<'a> {
    pub prompt_index: usize,
    pub prompt_sha256: &'a str,
    pub prompt_tokens: usize,
    pub repeat: usize,
}

impl Record {
    /// A record from a generation of `method` measured just after [`memory::reset_peak`].
    pub fn new(at: Measured, method: &Method, generation: &Generation) -> Self {
        let m = Metrics::of(generation);
        let max_depth = generation.rounds.iter().map(|r| r.depth).max().unwrap_or(0);
        let count_depth = |f: &dyn Fn(&crate::decode::Round) -> usize| {
            (1..=max_depth)
                .map(|d| generation.rounds.iter().filter(|r| f(r) >= d).count())
                .collect()
        };
        let rounds = generation.rounds.len();
        let accepted: usize = generation.rounds.iter().map(|r| r.accepted).sum();
        let slots: Option<usize> = generation
            .rounds
            .iter()
            .map(|r| method.paper_acceptance_slots(r.base_depth))
            .sum();
        let paper_acceptance = slots
            .filter(|&slots| rounds > 0 && slots > 0)
            .map(|slots| (accepted + rounds) as f64 / slots as f64);
        Self {
            prompt_index: at.prompt_index,
            prompt_sha256: at.prompt_sha256.to_string(),
            prompt_tokens: at.prompt_tokens,
            repeat: at.repeat,
            new_tokens: m.new_tokens,
            wall_s: m.wall_s,
            ttft_ms: m.ttft_ms,
            tpot_ms: m.tpot_ms,
            tokens_per_s: m.tokens_per_s,
            target_passes: generation.target_passes,
            rounds,
            drafted: generation.rounds.iter().map(|r| r.drafted).sum(),
            accepted,
            paper_acceptance,
            draft_s: m.draft_s,
            verify_s: m.verify_s,
            depth_offered: count_depth(&|r| r.depth),
            depth_accepted: count_depth(&|r| r.accepted),
            output_sha256: tokens_sha256(&generation.tokens),
            lossless: false,
            peak_heap_bytes: memory::peak_heap_bytes(),
            peak_rss_kib: memory::peak_rss_kib(),
            gpu_peaks: None,
            kv_target_bytes: generation.cache_bytes.target,
            kv_draft_bytes: generation.cache_bytes.draft,
        }
    }
}

/// Aggregates over every record of a run. Timings are estimated over prompts: each prompt's
/// repeats are averaged first, because prompts differ far more than repeats of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub generations: usize,
    pub prompts: usize,
    pub throughput_tokens_per_s: Option<Estimate>,
    pub ttft_ms: Option<Estimate>,
    pub tpot_ms: Option<Estimate>,
    /// New tokens ÷ target forward passes, over all generations.
    pub tokens_per_target_pass: Option<f64>,
    /// Accepted ÷ drafted tokens, over all generations (the paper's text's definition).
    pub draft_acceptance: Option<f64>,
    /// The authors' scripts' acceptance ([`Record::paper_acceptance`]), mean over prompts.
    pub paper_acceptance: Option<f64>,
    /// ℓ̄: accepted draft tokens per round, before the target's own token.
    pub mean_accepted_length: Option<f64>,
    pub rounds_per_generation: Option<f64>,
    pub acceptance_by_depth: Vec<Option<f64>>,
    pub draft_time_fraction: Option<f64>,
    pub draft_s_per_generation: Option<f64>,
    pub verify_s_per_generation: Option<f64>,
}

/// Each prompt's mean of `f` over its repeats, in prompt order (records without a value skipped).
pub fn per_prompt_means(records: &[Record], f: impl Fn(&Record) -> Option<f64>) -> Vec<f64> {
    let mut by_prompt: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for record in records {
        if let Some(v) = f(record) {
            let entry = by_prompt.entry(record.prompt_index).or_default();
            entry.0 += v;
            entry.1 += 1;
        }
    }
    by_prompt.values().map(|(sum, n)| sum / *n as f64).collect()
}

impl Summary {
    pub fn of(records: &[Record], speculative: bool) -> Self {
        let over_prompts =
            |f: &dyn Fn(&Record) -> Option<f64>| Estimate::of(&per_prompt_means(records, f));
        let total = |f: &dyn Fn(&Record) -> usize| records.iter().map(f).sum::<usize>() as f64;
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let depth_len = records
            .iter()
            .map(|r| r.depth_offered.len())
            .max()
            .unwrap_or(0);
        let by_depth = (0..depth_len)
            .map(|d| {
                let at = |v: &Vec<usize>| v.get(d).copied().unwrap_or(0);
                ratio(
                    total(&|r| at(&r.depth_accepted)),
                    total(&|r| at(&r.depth_offered)),
                )
            })
            .collect();
        let draft_s = total_seconds(records.iter().map(|r| r.draft_s));
        let verify_s = total_seconds(records.iter().map(|r| r.verify_s));
        let generations = records.len();
        let per_generation = |v: f64| speculative.then(|| v / generations.max(1) as f64);
        let rounds = total(&|r| r.rounds);
        Self {
            generations,
            prompts: per_prompt_means(records, |_| Some(0.0)).len(),
            throughput_tokens_per_s: over_prompts(&|r| Some(r.tokens_per_s)),
            ttft_ms: over_prompts(&|r| Some(r.ttft_ms)),
            tpot_ms: over_prompts(&|r| r.tpot_ms),
            tokens_per_target_pass: ratio(total(&|r| r.new_tokens), total(&|r| r.target_passes)),
            draft_acceptance: ratio(total(&|r| r.accepted), total(&|r| r.drafted))
                .filter(|_| speculative),
            paper_acceptance: over_prompts(&|r| r.paper_acceptance).map(|e| e.mean),
            mean_accepted_length: ratio(total(&|r| r.accepted), rounds).filter(|_| speculative),
            rounds_per_generation: per_generation(rounds),
            acceptance_by_depth: by_depth,
            draft_time_fraction: ratio(draft_s, draft_s + verify_s).filter(|_| speculative),
            draft_s_per_generation: per_generation(draft_s),
            verify_s_per_generation: per_generation(verify_s),
        }
    }
}
