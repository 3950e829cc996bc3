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
///
/// Within a block (one dataset, prompt cap and generation length) only `method`, `params` and
/// `models` may differ between points: [`RunIds`] writes the rest once per block.
pub fn run_config(manifest: &Manifest, point: &GridPoint, resolved: &Resolved) -> Value {
    json!({
        "engine_version": ENGINE_VERSION,
        "prompt_rules_version": crate::data::PROMPT_RULES_VERSION,
        "models": models(manifest, resolved, point.method.needs_draft()),
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

fn models(manifest: &Manifest, resolved: &Resolved, with_draft: bool) -> Value {
    let draft = match with_draft {
        true => resolved.draft.clone().unwrap_or(Value::Null),
        false => Value::Null,
    };
    json!({ "target": resolved.target, "draft": draft, "dtype": manifest.models.dtype })
}

/// The keys of a run config that differ between the points of one block.
const POINT_KEYS: [&str; 3] = ["method", "params", "models"];

/// Run ids of the points of a grid in order, each at the cost of its own method and parameters:
/// the canonical text of the rest of the config is written once per block. Equal to
/// `store::run_id(&run_config(..))` for every point.
pub struct RunIds<'a> {
    manifest: &'a Manifest,
    resolved: &'a Resolved,
    /// The `models` value without and with the draft.
    models: [Value; 2],
    block: Option<(BlockKey, store::ObjectTemplate)>,
}

type BlockKey = (String, usize, usize);

impl<'a> RunIds<'a> {
    pub fn new(manifest: &'a Manifest, resolved: &'a Resolved) -> Self {
        Self {
            manifest,
            resolved,
            models: [false, true].map(|draft| models(manifest, resolved, draft)),
            block: None,
        }
    }

    pub fn id(&mut self, point: &GridPoint) -> String {
        let same_block = |(d, c, l): &BlockKey| {
            (d.as_str(), *c, *l)
                == (
                    point.dataset.as_str(),
                    point.max_chars,
                    point.max_new_tokens,
                )
        };
        let template = match &self.block {
            Some((key, template)) if same_block(key) => template,
            _ => {
                let config = run_config(self.manifest, point, self.resolved);
                let fixed = config.as_object().expect("a run config is an object");
                let key = (point.dataset.clone(), point.max_chars, point.max_new_tokens);
                let template = store::ObjectTemplate::new(fixed, &POINT_KEYS);
                &self.block.insert((key, template)).1
            }
        };
        let method = Value::from(point.method.name());
        let models = &self.models[usize::from(point.method.needs_draft())];
        let text = template.write(&[&method, &point.method.params(), models]);
        store::sha256_hex(text.as_bytes())
    }
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
            // Everything that shapes the numbers: the config, the weights and the tokenizer
            // that encodes the prompts (its absence is part of the identity too).
            let tokenizer = files.tokenizer.iter();
            for file in std::iter::once(&files.config)
                .chain(&files.weights)
                .chain(tokenizer)
            {
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

/// sha256 of files, remembered so that multi-gigabyte checkpoints are hashed once, not at every
/// `plan`. A remembered hash is reused only while the file's path, size, modification time,
/// inode and status-change time (ctime) are all unchanged: `touch -d` can restore an mtime, but
/// any write or `touch` moves the ctime, which no user command sets back, and replacing the
/// file moves the inode.
pub struct HashCache {
    path: PathBuf,
    entries: BTreeMap<String, (FileStamp, String)>,
    dirty: bool,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    size: u64,
    mtime_ns: u128,
    inode: u64,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Self {
            size: meta.len(),
            mtime_ns,
            inode: meta.ino(),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
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
        let stamp = FileStamp::of(&meta);
        let key = std::fs::canonicalize(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string();
        if let Some((known, hash)) = self.entries.get(&key) {
            if *known == stamp {
                return Ok(hash.clone());
            }
        }
        let hash = crate::data::sha256_file(file)?;
        self.entries.insert(key, (stamp, hash.clone()));
        self.dirty = true;
        Ok(hash)
    }

    /// Persists new entries; losing them only costs re-hashing later.
    pub fn save(&self) {
        if self.dirty {
            if let Some(dir) = self.path.parent() {
                // Only inside an artifacts directory that exists: `plan` with a misspelt
                // --artifacts must not create one.
                if dir.parent().is_some_and(|root| !root.is_dir()) {
                    return;
                }
                let _ = std::fs::create_dir_all(dir);
            }
            let text = serde_json::to_vec(&self.entries).unwrap_or_default();
            let _ = store::write_atomic(&self.path, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed ids are the ids of the whole configs, across datasets, prompt caps,
    /// lengths and every method (with and without the draft).
    #[test]
    fn streamed_ids_equal_whole_config_ids() {
        let text = r#"
[experiment]
name = "ids"
repeats = 2
[models]
target = { path = "target" }
draft = { path = "draft" }
dtype = "f32"
device = "cpu"
[datasets.a]
label = "A"
kind = "text"
path = "a.parquet"
[datasets.b]
label = "B"
kind = "text"
path = "b.parquet"
[prompts]
count = 1
max_chars = { a = [10, 20], b = 30 }
[generation]
max_new_tokens = [4, 8]
[sweep]
dataset = ["a", "b"]
method = ["ar", "linear", "fixed_tree", "dynatree", "hf_assisted"]
[sweep.linear]
k = [2, 3]
[sweep.fixed_tree]
depth = [2, 3]
branch = [2]
tau = [0.0, 0.1]
max_nodes = [8]
"#;
        let manifest = crate::manifest::parse(text, Path::new("ids.toml")).unwrap();
        let resolved = Resolved {
            target: json!({"files": {"model.safetensors": "sha256:aa"}}),
            draft: Some(json!({"files": {"model.safetensors": "sha256:bb"}})),
            datasets: [("a", 1), ("b", 2)]
                .map(|(d, n)| (d.to_string(), json!({"kind": "text", "n": n})))
                .into(),
            device: json!({"kind": "cpu", "name": "test"}),
        };
        let points = crate::grid::expand(&manifest).unwrap();
        assert_eq!(points.len(), 3 * 2 * (1 + 2 + 4 + 1 + 1));
        let mut ids = RunIds::new(&manifest, &resolved);
        let streamed: Vec<String> = points.iter().map(|p| ids.id(p)).collect();
        let whole: Vec<String> = points
            .iter()
            .map(|p| store::run_id(&run_config(&manifest, p, &resolved)))
            .collect();
        assert_eq!(streamed, whole);
        let distinct: std::collections::BTreeSet<&String> = whole.iter().collect();
        assert_eq!(distinct.len(), whole.len());
    }

    /// Same size, mtime set back: the ctime still tells the new bytes apart.
    #[test]
    fn rewritten_bytes_are_rehashed_even_with_their_old_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weights.bin");
        std::fs::write(&file, b"aaaa").unwrap();
        let mut cache = HashCache::open(&dir.path().join("hashes.json"));
        let before = cache.sha256(&file).unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"bbbb").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        let after = cache.sha256(&file).unwrap();
        assert_ne!(
            before, after,
            "the cache must not trust size and mtime alone"
        );
        assert_eq!(after, crate::data::sha256_file(&file).unwrap());
        // Unchanged, it is remembered, not hashed again.
        cache.dirty = false;
        assert_eq!(cache.sha256(&file).unwrap(), after);
        assert!(!cache.dirty);
    }
}
