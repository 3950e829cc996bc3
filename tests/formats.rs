//! Checkpoint formats and architecture variants, against transformers' outputs on micro models:
//! sharded safetensors with a sequential residual, a PyTorch pickle with tanh GELU and full
//! rotary, and float16 weights.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use common::{last_logits, max_abs_diff};
use dynatree::decode::{self, GenerationSettings, Method};
use dynatree::model::{GptNeox, HubSettings, ModelFiles, ModelSource};
use serde::Deserialize;

#[derive(Deserialize)]
struct Variant {
    prompt_ids: Vec<u32>,
    last_logits: Vec<f32>,
    greedy: Vec<u32>,
}

fn micro_dir() -> PathBuf {
    common::repo("tests/fixtures/micro-neox")
}

fn variant(name: &str) -> Variant {
    let text = std::fs::read_to_string(micro_dir().join("reference.json")).unwrap();
    let mut all: std::collections::HashMap<String, Variant> = serde_json::from_str(&text).unwrap();
    all.remove(name).expect("variant in reference.json")
}

fn load(name: &str, dtype: DType) -> (ModelFiles, GptNeox) {
    let source = ModelSource::Local(micro_dir().join(name));
    let files = ModelFiles::resolve(&source, &HubSettings::from_vars(|_| None)).unwrap();
    let model = files.load(dtype, &Device::Cpu).unwrap();
    (files, model)
}

fn greedy(model: &GptNeox, prompt: &[u32], n: usize) -> Vec<u32> {
    let settings = GenerationSettings {
        max_new_tokens: n,
        stop_at_eos: false,
        eos_token_id: Some(0),
        vocab_limit: model.config().vocab_size,
        trace_trees: false,
    };
    decode::generate(&Method::Ar, model, None, prompt, &settings)
        .unwrap()
        .tokens
}

fn assert_matches_transformers(name: &str, dtype: DType, tolerance: f32) {
    let reference = variant(name);
    let (_, model) = load(name, dtype);
    let diff = max_abs_diff(
        &last_logits(&model, &reference.prompt_ids),
        &reference.last_logits,
    );
    assert!(
        diff <= tolerance,
        "{name} {dtype:?}: logits differ by {diff}"
    );
    if dtype == DType::F32 {
        assert_eq!(
            greedy(&model, &reference.prompt_ids, reference.greedy.len()),
            reference.greedy,
            "{name}"
        );
    }
}

#[test]
fn sharded_safetensors_with_sequential_residual() {
    let (files, model) = load("sequential", DType::F32);
    assert_eq!(files.weights.len(), 3, "three shards from the index");
    assert!(!model.config().use_parallel_residual);
    assert_matches_transformers("sequential", DType::F32, 1e-4);
}

#[test]
fn pytorch_pickle_with_tanh_gelu_and_full_rotary() {
    let (files, model) = load("pth", DType::F32);
    assert!(files.weights[0].ends_with("pytorch_model.bin"));
    assert_eq!(model.config().rotary_dims(), model.config().head_dim());
    assert_matches_transformers("pth", DType::F32, 1e-4);
}

#[test]
fn float16_weights_load_exactly_as_f32() {
    assert_matches_transformers("half", DType::F32, 1e-4);
}

#[test]
fn reduced_precision_compute_stays_close() {
    assert_matches_transformers("half", DType::F16, 5e-2);
    assert_matches_transformers("half", DType::BF16, 2e-1);
}
