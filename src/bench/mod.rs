//! The bench stage: a manifest's grid turned into measured, content-addressed runs.

pub mod identity;
pub mod memory;
pub mod provenance;
pub mod record;
pub mod result;
pub mod runner;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use serde_json::{json, Value};

use crate::grid::{self, GridPoint};
use crate::manifest::{Manifest, ManifestError};
use crate::model::HubSettings;
use crate::store::{self, Store};
use identity::{HashCache, Resolved};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Boxed: engine errors are large and rare.
    #[error(transparent)]
    Engine(Box<crate::engine::EngineError>),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::engine::EngineError> for BenchError {
    fn from(error: crate::engine::EngineError) -> Self {
        Self::Engine(Box::new(error))
    }
}

/// One grid point with its identity.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub id: String,
    pub config: Value,
    pub point: GridPoint,
}

impl PlannedRun {
    /// `dataset method key=value ... max_new_tokens=N`, for people.
    pub fn label(&self) -> String {
        format!(
            "{} {} max_chars={} max_new_tokens={}",
            self.point.dataset,
            self.point.method.describe(),
            self.point.max_chars,
            self.point.max_new_tokens
        )
    }

    /// Matches `--only`: comma-separated terms, each `key=value` (dataset, method or a parameter)
    /// or a bare word naming the method, the dataset or an id prefix.
    pub fn matches(&self, filter: &str) -> bool {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        fields.insert("dataset".into(), self.point.dataset.clone());
        fields.insert("method".into(), self.point.method.name().into());
        fields.insert(
            "max_new_tokens".into(),
            self.point.max_new_tokens.to_string(),
        );
        fields.insert("max_chars".into(), self.point.max_chars.to_string());
        if let Some(params) = self.point.method.params().as_object() {
            for (k, v) in params {
                fields.insert(
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                );
            }
        }
        filter
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((k, v)) => fields.get(k.trim()).is_some_and(|f| f == v.trim()),
                None => {
                    term == self.point.dataset
                        || term == self.point.method.name()
                        || self.id.starts_with(term)
                }
            })
    }
}

/// The device a manifest asks for, and its identity (`auto` = CUDA when built and present).
pub fn resolve_device(name: &str) -> Result<(Device, Value), BenchError> {
    let wants_cuda = match name {
        "auto" => candle_core::utils::cuda_is_available(),
        "cuda" => true,
        _ => false,
    };
    if wants_cuda {
        let device = crate::model::parse_device("cuda")?;
        let gpu = provenance::gpu_description().unwrap_or_else(|| "unknown GPU".into());
        return Ok((device, json!({ "kind": "cuda", "name": gpu })));
    }
    Ok((
        Device::Cpu,
        json!({ "kind": "cpu", "name": provenance::cpu_model() }),
    ))
}

/// Expands the grid and gives every point its id.
pub fn plan(
    manifest: &Manifest,
    artifacts: &Path,
    hub: &HubSettings,
) -> Result<Vec<PlannedRun>, BenchError> {
    let points = grid::expand(manifest)?;
    let mut hashes = HashCache::open(&artifacts.join("cache/file-hashes.json"));
    let (_, device) = resolve_device(&manifest.models.device)?;
    let mut datasets = BTreeMap::new();
    for name in points.iter().map(|p| &p.dataset) {
        if !datasets.contains_key(name) {
            let spec = &manifest.datasets[name];
            datasets.insert(name.clone(), identity::dataset_identity(spec, &mut hashes)?);
        }
    }
    let resolved = Resolved {
        target: identity::model_identity(&manifest.models.target, hub, &mut hashes)?,
        draft: manifest
            .models
            .draft
            .as_ref()
            .map(|d| identity::model_identity(d, hub, &mut hashes))
            .transpose()?,
        datasets,
        device,
    };
    hashes.save();
    Ok(points
        .into_iter()
        .map(|point| {
            let config = identity::run_config(manifest, &point, &resolved);
            PlannedRun {
                id: store::run_id(&config),
                config,
                point,
            }
        })
        .collect())
}

/// Which runs are done, failed or pending.
pub struct Status {
    pub done: Vec<PlannedRun>,
    pub failed: Vec<(PlannedRun, String)>,
    pub pending: Vec<PlannedRun>,
}

pub fn status(planned: Vec<PlannedRun>, store: &Store) -> Status {
    let mut status = Status {
        done: Vec::new(),
        failed: Vec::new(),
        pending: Vec::new(),
    };
    for run in planned {
        if store.is_done(&run.id) {
            status.done.push(run);
        } else if let Some(error) = store.read_failure(&run.id) {
            status.failed.push((run, error));
        } else {
            status.pending.push(run);
        }
    }
    status
}

/// The inputs in which two run configs differ, as `path: left -> right` lines.
pub fn config_diff(left: &Value, right: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", left, right, &mut out);
    out
}

fn diff_into(path: &str, left: &Value, right: &Value, out: &mut Vec<String>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_into(
                    &sub,
                    l.get(key).unwrap_or(&Value::Null),
                    r.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (l, r) if l != r => out.push(format!("{path}: {l} -> {r}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_nested_paths() {
        let a = json!({"method": "linear", "params": {"k": 6}, "same": 1});
        let b = json!({"method": "linear", "params": {"k": 7}, "same": 1, "extra": true});
        assert_eq!(
            config_diff(&a, &b),
            vec!["extra: null -> true", "params.k: 6 -> 7"]
        );
        assert!(config_diff(&a, &a).is_empty());
    }
}
