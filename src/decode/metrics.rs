//! Per-generation figures derived from a [`Generation`](super::Generation).

use serde::{Deserialize, Serialize};

use super::Generation;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub new_tokens: usize,
    pub wall_s: f64,
    pub ttft_ms: f64,
    /// Mean time per output token after the first; `None` with fewer than two tokens.
    pub tpot_ms: Option<f64>,
    pub tokens_per_s: f64,
    /// New tokens per target forward pass (1.0 for AR).
    pub tokens_per_round: f64,
    /// Accepted / drafted draft tokens; `None` when nothing was drafted.
    pub draft_acceptance: Option<f64>,
    pub draft_s: f64,
    pub verify_s: f64,
}

impl Metrics {
    pub fn of(generation: &Generation) -> Self {
        let g = generation;
        let new_tokens = g.tokens.len();
        let drafted: usize = g.rounds.iter().map(|r| r.drafted).sum();
        let accepted: usize = g.rounds.iter().map(|r| r.accepted).sum();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            new_tokens,
            wall_s: g.wall_s,
            ttft_ms: g.ttft_s * 1e3,
            tpot_ms: (new_tokens > 1)
                .then(|| (g.wall_s - g.ttft_s) * 1e3 / (new_tokens - 1) as f64),
            tokens_per_s: ratio(new_tokens as f64, g.wall_s),
            tokens_per_round: ratio(new_tokens as f64, g.target_passes as f64),
            draft_acceptance: (drafted > 0).then(|| accepted as f64 / drafted as f64),
            draft_s: total_seconds(g.rounds.iter().map(|r| r.draft_s)),
            verify_s: total_seconds(g.rounds.iter().map(|r| r.verify_s)),
        }
    }
}

/// A sum of durations that is +0 when there are none: `Iterator::sum` of f64 starts from -0,
/// which AR (no rounds) would print as "-0" and store as `-0.0` in its result file.
pub(crate) fn total_seconds(seconds: impl Iterator<Item = f64>) -> f64 {
    seconds.fold(0.0, |total, s| total + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Round;

    #[test]
    fn derives_rates_from_rounds() {
        let round = |drafted, accepted| Round {
            drafted,
            depth: drafted,
            accepted,
            committed: accepted + 1,
            base_depth: None,
            draft_s: 0.1,
            verify_s: 0.2,
            tree: None,
        };
        let g = Generation {
            tokens: vec![1; 9],
            rounds: vec![round(4, 4), round(4, 1), round(2, 0)],
            target_passes: 3,
            wall_s: 1.0,
            ttft_s: 0.2,
            cache_bytes: Default::default(),
        };
        let m = Metrics::of(&g);
        assert_eq!(m.tokens_per_round, 3.0);
        assert_eq!(m.draft_acceptance, Some(0.5));
        assert!((m.tpot_ms.unwrap() - 100.0).abs() < 1e-9);
        assert!((m.tokens_per_s - 9.0).abs() < 1e-12);
        assert!((m.verify_s - 0.6).abs() < 1e-12);
    }

    #[test]
    fn a_generation_without_rounds_spends_plus_zero_drafting_and_verifying() {
        let g = Generation {
            tokens: vec![1; 3],
            rounds: Vec::new(),
            target_passes: 3,
            wall_s: 1.0,
            ttft_s: 0.2,
            cache_bytes: Default::default(),
        };
        let m = Metrics::of(&g);
        assert!(m.draft_s == 0.0 && m.draft_s.is_sign_positive());
        assert!(m.verify_s == 0.0 && m.verify_s.is_sign_positive());
        assert_eq!(serde_json::to_value(&m).unwrap()["draft_s"], 0.0);
        assert!(!serde_json::to_string(&m).unwrap().contains("-0"));
    }
}
