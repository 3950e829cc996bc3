//! The decode stage: AR, linear speculative, Fixed Tree, DynaTree and HF-assisted greedy
//! generation.

mod adaptive;
mod decoder;
pub mod method;
pub mod metrics;
pub mod registry;
pub mod tree;

use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use decoder::argmax_rows;
pub use method::{AdaptiveParams, Method, Schedule, TreeParams};
pub use metrics::Metrics;
pub use registry::{method_names, method_spec, MethodSpec, Param, ParamKind, ParamSpec, METHODS};

use crate::model::{GptNeox, ModelError};
use adaptive::AdaptiveState;
use decoder::Decoder;
use tree::DraftTree;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("method {0} needs a draft model (--draft)")]
    MissingDraft(&'static str),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("prompt token {token} is outside the model's vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("a prompt of {} + {new} new tokens + {lookahead} drafted beyond them needs {} positions, but the model has max_position_embeddings = {limit}; shorten the prompt (prompts.max_chars) or max_new_tokens", tokens(*prompt), prompt + new + lookahead)]
    ContextExceeded {
        prompt: usize,
        new: usize,
        lookahead: usize,
        limit: usize,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What a generation is asked to do, independent of the method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    /// End at the end-of-text token (the paper does not: it generates exactly `max_new_tokens`).
    pub stop_at_eos: bool,
    pub eos_token_id: Option<u32>,
    /// Ids at or above this are never chosen (Pythia pads its embedding past the tokenizer).
    pub vocab_limit: usize,
    /// Keep every round's drafted tree in `Round::tree` (`generate --json`); off in timed runs,
    /// whose host memory it would add to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace_trees: bool,
}

/// One speculative round: draft, then one target pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub drafted: usize,
    /// Depth of the drafted tree (its length, for a chain).
    pub depth: usize,
    /// Draft tokens the target accepted (its own extra token not counted).
    pub accepted: usize,
    /// Tokens the round added to the output: accepted + the target's own, cut to those still to
    /// generate.
    pub committed: usize,
    /// DynaTree's base depth D0 in force this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_depth: Option<usize>,
    pub draft_s: f64,
    pub verify_s: f64,
    /// The drafted tree, when `GenerationSettings::trace_trees` asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeTrace>,
}

/// A drafted tree as the reference writes it: tokens in insertion order, each node's parent
/// (-1 for a child of the committed sequence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeTrace {
    pub tokens: Vec<u32>,
    pub parents: Vec<i64>,
}

impl From<&DraftTree> for TreeTrace {
    fn from(tree: &DraftTree) -> Self {
        Self {
            tokens: tree.tokens.clone(),
            parents: tree
                .parents
                .iter()
                .map(|p| p.map_or(-1, |p| p as i64))
                .collect(),
        }
    }
}

/// The outcome of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// New tokens only, prompt excluded.
    pub tokens: Vec<u32>,
    /// Empty for AR.
    pub rounds: Vec<Round>,
    pub target_passes: usize,
    pub wall_s: f64,
    pub ttft_s: f64,
    /// Peak bytes of the key/value caches (caches only grow within a generation).
    pub cache_bytes: CacheBytes,
}

/// Key/value cache bytes of one generation; `draft` is 0 when no draft cache was made (AR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheBytes {
    pub target: usize,
    pub draft: usize,
}

/// Generates greedily with `method`. Every method yields exactly the tokens of AR.
pub fn generate(
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    prompt: &[u32],
    settings: &GenerationSettings,
) -> Result<Generation, DecodeError> {
    check_inputs(method, target, draft, prompt)?;
    check_context(method, target, draft, prompt.len(), settings.max_new_tokens)?;
    // One hop into the compute pool for the whole generation rather than one per forward pass.
    crate::model::compute_pool().install(|| run_rounds(method, target, draft, prompt, settings))
}

fn run_rounds(
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    prompt: &[u32],
    settings: &GenerationSettings,
) -> Result<Generation, DecodeError> {
    // Caches start with room for the prompt and grow as the generation needs (see
    // `GROWTH_CHUNK`); AR gets no draft cache, though the draft's weights stay loaded. Allocating
    // them is set-up, outside the timed region.
    let draft = draft.filter(|_| method.needs_draft());
    let mut decoder = Decoder::new(target, draft, prompt, settings.vocab_limit, prompt.len())?;
    let start = Instant::now();
    let mut drafter = Drafter::new(method);
    let mut rounds = Vec::new();
    let mut passes = 0;
    let mut ttft_s = None;
    let generated = |d: &Decoder| d.seq.len() - prompt.len();
    while generated(&decoder) < settings.max_new_tokens {
        let remaining = settings.max_new_tokens - generated(&decoder);
        let round_start = Instant::now();
        let base_depth = drafter.base_depth();
        let tree = drafter.draft(&mut decoder, remaining)?;
        let verify_start = Instant::now();
        let accepted = decoder.verify(&tree)?;
        passes += 1;
        ttft_s.get_or_insert(start.elapsed().as_secs_f64());
        let committed = (accepted + 1).min(remaining);
        drafter.update(tree.len(), accepted, committed);
        if method.needs_draft() {
            rounds.push(Round {
                drafted: tree.len(),
                depth: tree.depth(),
                accepted,
                committed,
                base_depth,
                draft_s: (verify_start - round_start).as_secs_f64(),
                verify_s: verify_start.elapsed().as_secs_f64(),
                tree: settings.trace_trees.then(|| TreeTrace::from(&tree)),
            });
        }
        if settings.stop_at_eos && reached_eos(&decoder.seq[prompt.len()..], settings.eos_token_id)
        {
            break;
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let cache_bytes = decoder.cache_bytes();
    let mut tokens = decoder.seq.split_off(prompt.len());
    truncate_output(&mut tokens, settings);
    Ok(Generation {
        tokens,
        rounds,
        target_passes: passes,
        wall_s,
        ttft_s: ttft_s.unwrap_or(0.0),
        cache_bytes,
    })
}

fn check_inputs(
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    prompt: &[u32],
) -> Result<(), DecodeError> {
    method.validate().map_err(DecodeError::InvalidParams)?;
    if method.needs_draft() && draft.is_none() {
        return Err(DecodeError::MissingDraft(method.name()));
    }
    if prompt.is_empty() {
        return Err(DecodeError::EmptyPrompt);
    }
    let vocab = draft
        .map_or(usize::MAX, |d| d.config().vocab_size)
        .min(target.config().vocab_size);
    match prompt.iter().find(|&&t| t as usize >= vocab) {
        Some(&token) => Err(DecodeError::TokenOutOfRange { token, vocab }),
        None => Ok(()),
    }
}

/// Refuses, before any work, a generation whose positions would run past either model's
/// context: the prompt, the new tokens and what the last round may draft beyond them.
pub fn check_context(
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    prompt: usize,
    new: usize,
) -> Result<(), DecodeError> {
    let limit = draft
        .filter(|_| method.needs_draft())
        .map_or(usize::MAX, |d| d.config().max_position_embeddings)
        .min(target.config().max_position_embeddings);
    fits_context(method, limit, prompt, new)
}

/// Whether a prompt of `prompt` tokens, `new` tokens and what `method`'s last round may draft
/// beyond them fit a context of `limit` positions.
pub fn fits_context(
    method: &Method,
    limit: usize,
    prompt: usize,
    new: usize,
) -> Result<(), DecodeError> {
    let lookahead = method.lookahead();
    if prompt + new + lookahead > limit {
        return Err(DecodeError::ContextExceeded {
            prompt,
            new,
            lookahead,
            limit,
        });
    }
    Ok(())
}

/// "1 token", "2 tokens".
fn tokens(n: usize) -> String {
    match n {
        1 => "1 token".to_string(),
        n => format!("{n} tokens"),
    }
}

fn reached_eos(tokens: &[u32], eos: Option<u32>) -> bool {
    eos.is_some_and(|e| tokens.contains(&e))
}

/// Cuts at `max_new_tokens`, and just after the first end-of-text when asked to stop there.
fn truncate_output(tokens: &mut Vec<u32>, settings: &GenerationSettings) {
    tokens.truncate(settings.max_new_tokens);
    if settings.stop_at_eos {
        if let Some(at) = settings
            .eos_token_id
            .and_then(|e| tokens.iter().position(|&t| t == e))
        {
            tokens.truncate(at + 1);
        }
    }
}

/// A method's drafting, with the state it carries from round to round of one generation.
enum Drafter {
    None,
    Chain {
        schedule: DraftSchedule,
        confidence_threshold: f64,
    },
    Fixed(TreeParams),
    Adaptive(AdaptiveState),
}

impl Drafter {
    fn new(method: &Method) -> Self {
        match method {
            Method::Ar => Self::None,
            Method::Linear { .. } | Method::HfAssisted { .. } => {
                let confidence_threshold = match method {
                    Method::HfAssisted {
                        confidence_threshold,
                        ..
                    } => *confidence_threshold,
                    _ => 0.0,
                };
                Self::Chain {
                    schedule: DraftSchedule::new(method),
                    confidence_threshold,
                }
            }
            Method::FixedTree(p) => Self::Fixed(*p),
            Method::Dynatree(p) => Self::Adaptive(AdaptiveState::new(p)),
        }
    }

    fn base_depth(&self) -> Option<usize> {
        match self {
            Self::Adaptive(state) => Some(state.base_depth),
            _ => None,
        }
    }

    /// Chains never run past the last token to generate (as transformers caps its assistant);
    /// trees are drafted whole in the last round too, as the authors do, and the output cut.
    fn draft(&self, decoder: &mut Decoder, remaining: usize) -> Result<DraftTree, ModelError> {
        match self {
            Self::None => Ok(DraftTree::default()),
            Self::Chain {
                schedule,
                confidence_threshold,
            } => decoder.draft_chain(schedule.length(remaining), *confidence_threshold),
            Self::Fixed(params) => decoder.grow_tree(params),
            Self::Adaptive(state) => decoder.grow_tree(state),
        }
    }

    fn update(&mut self, drafted: usize, accepted: usize, committed: usize) {
        match self {
            Self::Chain { schedule, .. } => schedule.update(drafted, accepted),
            Self::Adaptive(state) => state.update(committed),
            Self::None | Self::Fixed(_) => {}
        }
    }
}

/// How many tokens a chain drafts next round.
struct DraftSchedule {
    next: usize,
    heuristic: bool,
}

impl DraftSchedule {
    fn new(method: &Method) -> Self {
        let (next, heuristic) = match *method {
            Method::Linear { k } => (k, false),
            Method::HfAssisted {
                num_assistant_tokens,
                schedule,
                ..
            } => (num_assistant_tokens, schedule == Schedule::Heuristic),
            _ => (0, false),
        };
        Self { next, heuristic }
    }

    /// Never drafts past the last token still to generate, as transformers caps its assistant.
    fn length(&self, remaining: usize) -> usize {
        self.next.min(remaining.saturating_sub(1))
    }

    /// transformers' heuristic compares the accepted count with the tokens actually drafted.
    fn update(&mut self, drafted: usize, accepted: usize) {
        if self.heuristic {
            self.next = if accepted == drafted {
                self.next + 2
            } else {
                self.next.saturating_sub(1).max(1)
            };
        }
    }
}

/// Where a speculative output first departs from AR's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not lossless: new token {index} is {actual:?} but AR produced {expected:?}")]
pub struct LosslessMismatch {
    pub index: usize,
    pub expected: Option<u32>,
    pub actual: Option<u32>,
}

/// Greedy speculative decoding must reproduce AR token for token; the sweep runner calls this
/// on every run.
pub fn check_lossless(ar: &[u32], candidate: &[u32]) -> Result<(), LosslessMismatch> {
    let len = ar.len().max(candidate.len());
    match (0..len).find(|&i| ar.get(i) != candidate.get(i)) {
        None => Ok(()),
        Some(index) => Err(LosslessMismatch {
            index,
            expected: ar.get(index).copied(),
            actual: candidate.get(index).copied(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_check_reports_first_difference() {
        assert!(check_lossless(&[1, 2, 3], &[1, 2, 3]).is_ok());
        let err = check_lossless(&[1, 2, 3], &[1, 5, 3]).unwrap_err();
        assert_eq!((err.index, err.expected, err.actual), (1, Some(2), Some(5)));
        let short = check_lossless(&[1, 2, 3], &[1, 2]).unwrap_err();
        assert_eq!((short.index, short.actual), (2, None));
    }

    #[test]
    fn heuristic_schedule_follows_transformers() {
        let mut s = DraftSchedule::new(&Method::hf_assisted_default());
        assert_eq!(s.length(100), 5);
        s.update(5, 5);
        assert_eq!(s.length(100), 7);
        s.update(7, 3);
        assert_eq!(s.length(100), 6);
        assert_eq!(s.length(4), 3);
        // A capped round that accepts all it drafted still counts as fully accepted.
        s.update(3, 3);
        assert_eq!(s.length(100), 8);
        for _ in 0..10 {
            s.update(1, 0);
        }
        assert_eq!(s.length(100), 1);
    }

    #[test]
    fn output_is_cut_after_eos_only_when_asked() {
        let mut settings = GenerationSettings {
            max_new_tokens: 4,
            stop_at_eos: false,
            eos_token_id: Some(0),
            vocab_limit: 10,
            trace_trees: false,
        };
        let mut tokens = vec![5, 0, 6, 7, 8];
        truncate_output(&mut tokens, &settings);
        assert_eq!(tokens, vec![5, 0, 6, 7]);
        settings.stop_at_eos = true;
        truncate_output(&mut tokens, &settings);
        assert_eq!(tokens, vec![5, 0]);
    }
}
