//! Per-generation records and the summary of a run.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::memory;
use super::stats::Estimate;
use crate::decode::{Generation, Metrics};

/// One measured generation (a prompt and a repeat).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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
    pub rounds: usize,
    pub drafted: usize,
    pub accepted: usize,
    pub draft_s: f64,
    pub verify_s: f64,
    /// Rounds whose drafted tree reached depth d (index d - 1), and those whose accepted path did.
    pub depth_offered: Vec<usize>,
    pub depth_accepted: Vec<usize>,
    pub output_sha256: String,
    pub lossless: bool,
    pub peak_heap_bytes: Option<usize>,
    pub peak_rss_kib: Option<u64>,
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
    /// A record from a generation measured just after [`memory::reset_peak`].
    pub fn new(at: Measured, generation: &Generation) -> Self {
        let m = Metrics::of(generation);
        let max_depth = generation.rounds.iter().map(|r| r.depth).max().unwrap_or(0);
        let count_depth = |f: &dyn Fn(&crate::decode::Round) -> usize| {
            (1..=max_depth)
                .map(|d| generation.rounds.iter().filter(|r| f(r) >= d).count())
                .collect()
        };
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
            rounds: generation.rounds.len(),
            drafted: generation.rounds.iter().map(|r| r.drafted).sum(),
            accepted: generation.rounds.iter().map(|r| r.accepted).sum(),
            draft_s: m.draft_s,
            verify_s: m.verify_s,
            depth_offered: count_depth(&|r| r.depth),
            depth_accepted: count_depth(&|r| r.accepted),
            output_sha256: tokens_sha256(&generation.tokens),
            lossless: true,
            peak_heap_bytes: memory::peak_heap_bytes(),
            peak_rss_kib: memory::peak_rss_kib(),
        }
    }
}

/// Aggregates over every record of a run.
pub fn summarize(records: &[Record], speculative: bool) -> Value {
    let of = |f: &dyn Fn(&Record) -> Option<f64>| {
        Estimate::of(&records.iter().filter_map(f).collect::<Vec<_>>())
    };
    let total = |f: &dyn Fn(&Record) -> usize| records.iter().map(f).sum::<usize>() as f64;
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let depth_len = records
        .iter()
        .map(|r| r.depth_offered.len())
        .max()
        .unwrap_or(0);
    let by_depth: Vec<Option<f64>> = (0..depth_len)
        .map(|d| {
            let offered = total(&|r| r.depth_offered.get(d).copied().unwrap_or(0));
            ratio(
                total(&|r| r.depth_accepted.get(d).copied().unwrap_or(0)),
                offered,
            )
        })
        .collect();
    let draft_s = total_f(records, |r| r.draft_s);
    let verify_s = total_f(records, |r| r.verify_s);
    let mb = |bytes: f64| bytes / (1024.0 * 1024.0);
    json!({
        "generations": records.len(),
        "throughput_tokens_per_s": of(&|r| Some(r.tokens_per_s)),
        "ttft_ms": of(&|r| Some(r.ttft_ms)),
        "tpot_ms": of(&|r| r.tpot_ms),
        "tokens_per_target_pass": ratio(total(&|r| r.new_tokens), total(&|r| r.target_passes)),
        "acceptance_rate": if speculative { ratio(total(&|r| r.accepted), total(&|r| r.drafted)) } else { None },
        "acceptance_by_depth": by_depth,
        "draft_time_fraction": if speculative { ratio(draft_s, draft_s + verify_s) } else { None },
        "draft_s_per_generation": speculative.then(|| draft_s / records.len().max(1) as f64),
        "verify_s_per_generation": speculative.then(|| verify_s / records.len().max(1) as f64),
        "peak_heap_mb": records.iter().filter_map(|r| r.peak_heap_bytes).max().map(|b| mb(b as f64)),
        "peak_rss_mb": records.iter().filter_map(|r| r.peak_rss_kib).max().map(|k| k as f64 / 1024.0),
    })
}

fn total_f(records: &[Record], f: impl Fn(&Record) -> f64) -> f64 {
    records.iter().map(f).sum()
}
