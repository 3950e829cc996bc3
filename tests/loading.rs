//! Loading checkpoints: local directories, the hub cache, and every bad input's message.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use common::fixture_dir;
use dynatree::model::{HubSettings, ModelError, ModelFiles, ModelSource};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn copy_model(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

fn draft_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("draft");
    copy_model(&fixture_dir().join("draft"), &dir);
    (tmp, dir)
}

fn load_dir(dir: &Path) -> Result<dynatree::model::GptNeox, ModelError> {
    let settings = HubSettings::from_vars(|_| None);
    ModelFiles::resolve(&ModelSource::Local(dir.to_path_buf()), &settings)?
        .load(DType::F32, &Device::Cpu)
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "config has {from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn unknown_architecture_names_config_and_type() {
    let (_tmp, dir) = draft_copy();
    edit_config(
        &dir,
        "\"model_type\": \"gpt_neox\"",
        "\"model_type\": \"llama\"",
    );
    edit_config(&dir, "GPTNeoXForCausalLM", "LlamaForCausalLM");
    let msg = load_dir(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("config.json") && msg.contains("llama"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_file_tensor_and_shapes() {
    let (_tmp, dir) = draft_copy();
    edit_config(
        &dir,
        "\"intermediate_size\": 512",
        "\"intermediate_size\": 256",
    );
    let err = load_dir(&dir).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("mlp.dense_h_to_4h.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("[256, 128]") && msg.contains("[512, 128]"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let (_tmp, dir) = draft_copy();
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    tensors.remove("gpt_neox.layers.1.attention.dense.bias");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let msg = load_dir(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("missing tensor gpt_neox.layers.1.attention.dense.bias")
            && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn truncated_weights_are_refused_with_the_path() {
    let (_tmp, dir) = draft_copy();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_dir(&dir).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::WeightFile { .. }), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn directory_without_weights_says_what_it_looked_for() {
    let (_tmp, dir) = draft_copy();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let msg = load_dir(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("no weights found") && msg.contains("pytorch_model.bin"),
        "{msg}"
    );
}

/// Lays the fixture out as huggingface_hub caches it: refs/main -> snapshots/<commit>/files.
fn hub_cache(root: &Path) -> PathBuf {
    let repo = root.join("models--tiny--draft");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    copy_model(
        &fixture_dir().join("draft"),
        &repo.join("snapshots").join(COMMIT),
    );
    root.to_path_buf()
}

fn hub_source() -> ModelSource {
    ModelSource::parse("tiny/draft").unwrap()
}

#[test]
fn offline_hub_model_loads_from_the_cache_with_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = HubSettings {
        cache_dir: hub_cache(tmp.path()),
        endpoint: "http://127.0.0.1:9".into(),
        offline: true,
    };
    let files = ModelFiles::resolve(&hub_source(), &settings).unwrap();
    assert_eq!(files.commit.as_deref(), Some(COMMIT));
    assert!(files.tokenizer.is_some());
    let model = files.load(DType::F32, &Device::Cpu).unwrap();
    assert_eq!(model.config().num_hidden_layers, 2);

    let pinned = ModelSource::parse(&format!("tiny/draft@{COMMIT}")).unwrap();
    assert_eq!(
        ModelFiles::resolve(&pinned, &settings)
            .unwrap()
            .commit
            .as_deref(),
        Some(COMMIT)
    );
}

#[test]
fn unreachable_hub_falls_back_to_a_complete_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = HubSettings {
        cache_dir: hub_cache(tmp.path()),
        endpoint: "http://127.0.0.1:1".into(),
        offline: false,
    };
    let files = ModelFiles::resolve(&hub_source(), &settings).unwrap();
    assert_eq!(files.commit.as_deref(), Some(COMMIT));
}

#[test]
fn offline_without_cache_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = HubSettings {
        cache_dir: tmp.path().to_path_buf(),
        endpoint: "http://127.0.0.1:9".into(),
        offline: true,
    };
    let msg = ModelFiles::resolve(&hub_source(), &settings)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("tiny/draft@main") && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    let online = HubSettings {
        offline: false,
        endpoint: "http://127.0.0.1:1".into(),
        ..settings
    };
    let msg = ModelFiles::resolve(&hub_source(), &online)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("tiny/draft@main"), "{msg}");
}
