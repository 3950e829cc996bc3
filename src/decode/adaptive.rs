//! DynaTree's adaptive drafting: confidence-driven breadth, probability-gated depth, and the
//! history that moves the base depth and thresholds between rounds.
//!
//! The rules are the authors' code (`TreeSpeculativeGeneratorV2AdaptiveV2/V3`), with two
//! documented departures from it, both towards the paper's text or towards independent runs:
//! - the depth gate tests `d + 1` (the child's depth) as their code does; the paper's text
//!   writes it with `d`;
//! - history adapts after every *round* within one generation and starts afresh for each
//!   generation; their scripts update once per generation and carry the state across prompts,
//!   which makes a prompt's result depend on the prompts before it.

use std::collections::VecDeque;

use super::method::AdaptiveParams;
use super::tree::TreePolicy;

/// Rounds of history needed before the parameters move (the authors' constant).
const MIN_HISTORY: usize = 5;
/// Distance from the target acceptance within which nothing changes.
const DEAD_BAND: f64 = 0.1;

/// The parameters in force for one generation's next round, and the recent rounds' acceptance.
#[derive(Debug, Clone)]
pub struct AdaptiveState {
    params: AdaptiveParams,
    pub base_depth: usize,
    tau_h: f64,
    rho_deep: f64,
    history: VecDeque<f64>,
}

impl AdaptiveState {
    pub fn new(params: &AdaptiveParams) -> Self {
        Self {
            params: *params,
            base_depth: params.base_depth,
            tau_h: params.tau_h,
            rho_deep: params.rho_deep,
            history: VecDeque::with_capacity(params.window + 1),
        }
    }

    /// Records a round that committed `committed` tokens (bonus included, truncated to what was
    /// left to generate) and adjusts the parameters for the next one.
    pub fn update(&mut self, committed: usize) {
        let p = &self.params;
        if p.window == 0 {
            return;
        }
        self.history
            .push_back(committed as f64 / (self.base_depth + 2) as f64);
        if self.history.len() > p.window {
            self.history.pop_front();
        }
        if self.history.len() < MIN_HISTORY {
            return;
        }
        let mean = self.history.iter().sum::<f64>() / self.history.len() as f64;
        if mean > p.target_acceptance + DEAD_BAND {
            self.base_depth = (self.base_depth + 1).min(p.max_depth.saturating_sub(1));
            self.tau_h = (self.tau_h - p.step).max(0.5);
            self.rho_deep = (self.rho_deep - p.step).max(0.3);
        } else if mean < p.target_acceptance - DEAD_BAND {
            self.base_depth = self.base_depth.saturating_sub(1).max(2);
            self.tau_h = (self.tau_h + p.step).min(0.95);
            self.rho_deep = (self.rho_deep + p.step).min(0.8);
        }
    }
}

impl TreePolicy for AdaptiveState {
    fn max_nodes(&self) -> usize {
        self.params.max_nodes
    }

    fn expands(&self, depth: usize, log_prob: f64) -> bool {
        let p = &self.params;
        let pruned = log_prob < p.tau.ln();
        if !p.dynamic_depth {
            return depth < self.base_depth && !pruned;
        }
        let prob = log_prob.exp();
        let next = depth + 1;
        prob >= p.rho_stop
            && next < p.max_depth
            && (next < self.base_depth || prob > self.rho_deep)
            && !pruned
    }

    fn breadth(&self, confidence: f64) -> usize {
        let p = &self.params;
        if !p.dynamic_breadth {
            p.b_mid
        } else if confidence > self.tau_h {
            p.b_min
        } else if confidence < p.tau_l {
            p.b_max
        } else {
            p.b_mid
        }
    }

    fn max_breadth(&self) -> usize {
        let p = &self.params;
        if p.dynamic_breadth {
            p.b_min.max(p.b_mid).max(p.b_max)
        } else {
            p.b_mid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Method;

    fn defaults() -> AdaptiveParams {
        match Method::default_of("dynatree") {
            Some(Method::Dynatree(p)) => p,
            _ => unreachable!("dynatree is registered"),
        }
    }

    #[test]
    fn breadth_follows_confidence() {
        let state = AdaptiveState::new(&defaults());
        assert_eq!(state.breadth(0.95), 1);
        assert_eq!(state.breadth(0.6), 2);
        assert_eq!(state.breadth(0.2), 3);
        let flat = AdaptiveState::new(&AdaptiveParams {
            dynamic_breadth: false,
            ..defaults()
        });
        assert_eq!(flat.breadth(0.2), 2);
    }

    #[test]
    fn depth_is_gated_by_path_probability() {
        let state = AdaptiveState::new(&defaults());
        let lp = |p: f64| p.ln();
        assert!(state.expands(0, lp(0.2)));
        assert!(!state.expands(0, lp(0.09)), "below rho_stop");
        // Children at depth 5 = D0 need p > rho_deep.
        assert!(!state.expands(4, lp(0.4)));
        assert!(state.expands(4, lp(0.6)));
        // Never a child at depth Dmax.
        assert!(!state.expands(7, lp(0.99)));
        let fixed = AdaptiveState::new(&AdaptiveParams {
            dynamic_depth: false,
            ..defaults()
        });
        assert!(fixed.expands(4, lp(0.06)));
        assert!(!fixed.expands(5, lp(0.99)));
        assert!(!fixed.expands(0, lp(0.04)), "below tau");
    }

    #[test]
    fn history_moves_the_base_depth_after_five_rounds() {
        let mut state = AdaptiveState::new(&defaults());
        for _ in 0..4 {
            state.update(7);
        }
        assert_eq!(state.base_depth, 5, "not before five rounds");
        state.update(7);
        assert_eq!((state.base_depth, state.tau_h), (6, 0.9 - 0.05));
        for _ in 0..20 {
            state.update(1);
        }
        assert_eq!(state.base_depth, 2);
        assert_eq!(state.rho_deep, 0.8);
        let mut off = AdaptiveState::new(&AdaptiveParams {
            window: 0,
            ..defaults()
        });
        for _ in 0..10 {
            off.update(9);
        }
        assert_eq!(off.base_depth, 5);
    }
}
