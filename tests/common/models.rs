//! The trained tiny GPT-NeoX pair and transformers' reference outputs.

use std::sync::OnceLock;

use candle_core::{DType, Device};
use dynatree::decode::{self, Generation, GenerationSettings, Method};
use dynatree::model::{GptNeox, HubSettings, ModelFiles, ModelSource};
use serde::Deserialize;

use super::paths::fixture_dir;

#[derive(Deserialize)]
pub struct Reference {
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub prompt_ids: Vec<u32>,
    pub target_last_logits: Vec<f32>,
    pub draft_last_logits: Vec<f32>,
    pub target_greedy: Vec<u32>,
    pub draft_greedy: Vec<u32>,
    pub assisted_heuristic: Assisted,
    pub assisted_constant: Assisted,
    pub tree: RefTree,
}

#[derive(Deserialize)]
pub struct Assisted {
    pub tokens: Vec<u32>,
    pub num_matches_per_iteration: Vec<usize>,
}

#[derive(Deserialize)]
pub struct RefTree {
    pub tokens: Vec<u32>,
    pub parents: Vec<i32>,
    pub target_logits_per_node: Vec<Vec<f32>>,
}

pub fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let text =
            std::fs::read_to_string(fixture_dir().join("reference.json")).expect("reference.json");
        serde_json::from_str(&text).expect("reference.json parses")
    })
}

pub fn load(which: &str) -> GptNeox {
    load_as(which, DType::F32)
}

pub fn load_as(which: &str, dtype: DType) -> GptNeox {
    let source = ModelSource::Local(fixture_dir().join(which));
    let files = ModelFiles::resolve(&source, &HubSettings::from_env()).expect("fixture resolves");
    files.load(dtype, &Device::Cpu).expect("fixture loads")
}

pub struct Pair {
    pub target: GptNeox,
    pub draft: GptNeox,
}

pub fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| Pair {
        target: load("target"),
        draft: load("draft"),
    })
}

pub fn settings(max_new_tokens: usize) -> GenerationSettings {
    GenerationSettings {
        max_new_tokens,
        stop_at_eos: false,
        eos_token_id: Some(0),
        vocab_limit: 2048,
        trace_trees: false,
    }
}

pub fn run(method: &Method, prompt: &[u32], max_new_tokens: usize) -> Generation {
    let p = pair();
    decode::generate(
        method,
        &p.target,
        Some(&p.draft),
        prompt,
        &settings(max_new_tokens),
    )
    .expect("generation runs")
}

/// Parents of a plain chain of `n` tokens.
pub fn chain(n: usize) -> Vec<i32> {
    dynatree::model::chain_parents(n)
}

/// Logits after the last of `tokens`, from one causal pass on a fresh cache.
pub fn last_logits(model: &GptNeox, tokens: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache(tokens.len()).unwrap();
    let logits = model
        .forward(tokens, &chain(tokens.len()), &mut cache, tokens.len() - 1)
        .unwrap();
    logits.flatten_all().unwrap().to_vec1().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
