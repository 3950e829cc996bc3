//! What determines a run's numbers, as one JSON object: its id is the sha256 of this object's
//! canonical form (see [`crate::store::run_id`]). A description or comment is not part of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::BenchError;
use crate::grid::GridPoint;
use crate::manifest::{DatasetSource, DatasetSpec, Manifest, ModelRef};
use crate::model::{HubSettings, ModelFiles, ModelSource};
use crate::store;

/// Bump whenever the engine's numbers for the same inputs would change.
pub const ENGINE_VERSION: u32 = 3;

/// Identities shared by every run of a manifest, resolved once.
pub struct Resolved {
    pub target: Value,
    pub draft: Option<Value>,
    pub datasets: BTreeMap<String, Value>,
    pub device: Value,
}

/// The identity object of one grid point.
pub fn run_config(manifest: &Manifest, point: &GridPoint, resolved: &Resolved) -> Value {
    json!({
        "engine_version": ENGINE_VERSION,
        "prompt_rules_version": crate::data::PROMPT_RULES_VERSION,
        "models": {
            "target": resolved.target,
            "draft": if point.method.needs_draft() { resolved.draft.clone().unwrap_or(Value::Null) } else { Value::Null },
            "dtype": manifest.models.dtype,
        },
        "dataset": resolved.datasets.get(&point.dataset).cloned().unwrap_or(Value::Null),
        "prompts": {
            "count": manifest.prompts.count,
            "max_chars": point.max_chars,
            "seed": manifest.experiment.seed,
        },
        "method": point.method.name(),
        "params": point.method.params(),
        "generation": {
            "max_new_tokens": point.max_new_tokens,
            "stop_at_eos": manifest.generation.stop_at_eos,
        },
        "repeats": manifest.experiment.repeats,
        "warmup": manifest.experiment.warmup,
        "device": resolved.device,
    })
}

/// The config of the AR run a run is compared with: the same config with method `ar`, no
/// parameters and no draft model. Its run id is the baseline's id.
pub fn baseline_config(config: &Value) -> Value {
    let mut baseline = config.clone();
    baseline["method"] = json!("ar");
    baseline["params"] = json!({});
    baseline["models"]["draft"] = Value::Null;
    baseline
}

/// A model's identity: hub id and resolved commit, or the sha256 of its local files.
pub fn model_identity(
    model: &ModelRef,
    hub: &HubSettings,
    hashes: &mut HashCache,
) -> Result<Value, BenchError> {
    match model {
        ModelRef::Hub {
            hub: repo,
            revision,
        } => {
            let commit =
                crate::model::hub::resolve_commit(repo, revision, hf_hub::RepoType::Model, hub)?;
            Ok(json!({ "hub": repo, "commit": commit }))
        }
        ModelRef::Path { path } => {
            let files = ModelFiles::resolve(&ModelSource::Local(path.clone()), hub)?;
            let mut hashed = BTreeMap::new();
            for file in std::iter::once(&files.config).chain(&files.weights) {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                hashed.insert(name, format!("sha256:{}", hashes.sha256(file)?));
            }
            Ok(json!({ "files": hashed }))
        }
    }
}

/// A dataset's identity: its kind, column and file checksums (verified for local files).
pub fn dataset_identity(spec: &DatasetSpec, hashes: &mut HashCache) -> Result<Value, BenchError> {
    let files: BTreeMap<String, String> = match &spec.source {
        // Hub files are pinned by the manifest's checksums (or the lock's, for files the
        // manifest leaves unpinned), which fetching verifies.
        DatasetSource::Hub { .. } => crate::data::fetch::hub_pins(&spec.source)?,
        DatasetSource::Path { path, sha256 } => {
            let actual = format!("sha256:{}", hashes.sha256(path)?);
            if let Some(expected) = sha256.as_ref().filter(|e| **e != actual) {
                return Err(crate::data::DataError::Checksum {
                    path: path.clone(),
                    expected: expected.clone(),
                    actual: actual.trim_start_matches("sha256:").to_string(),
                }
                .into());
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            BTreeMap::from([(name, actual)])
        }
    };
    Ok(json!({ "kind": spec.kind, "column": spec.column, "files": files }))
}

/// sha256 of files, remembered by path, size and modification time so that multi-gigabyte
/// checkpoints are hashed once, not at every `plan`.
pub struct HashCache {
    path: PathBuf,
    entries: BTreeMap<String, (u64, u128, String)>,
    dirty: bool,
}

impl HashCache {
    pub fn open(path: &Path) -> Self {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            path: path.to_path_buf(),
            entries,
            dirty: false,
        }
    }

    pub fn sha256(&mut self, file: &Path) -> Result<String, BenchError> {
        let meta = std::fs::metadata(file).map_err(|source| crate::data::DataError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::fs::canonicalize(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        if let Some((size, time, hash)) = self.entries.get(&key) {
            if *size == meta.len() && *time == mtime {
                return Ok(hash.clone());
            }
        }
        let hash = crate::data::sha256_file(file)?;
        self.entries.insert(key, (meta.len(), mtime, hash.clone()));
        self.dirty = true;
        Ok(hash)
    }

    /// Persists new entries; losing them only costs re-hashing later.
    pub fn save(&self) {
        if self.dirty {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let text = serde_json::to_vec(&self.entries).unwrap_or_default();
            let _ = store::write_atomic(&self.path, &text);
        }
    }
}
