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

    /// What `--only key=value` can select on: dataset, method, lengths and every parameter.
    fn fields(&self) -> BTreeMap<String, String> {
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
        fields
    }

    fn matches_term(&self, term: &str, fields: &BTreeMap<String, String>) -> bool {
        match term.split_once('=') {
            Some((k, v)) => fields.get(k.trim()).is_some_and(|f| f == v.trim()),
            None => {
                term == self.point.dataset
                    || term == self.point.method.name()
                    || self.id.starts_with(term)
            }
        }
    }

    /// Matches `--only`: comma-separated terms, each `key=value` (dataset, method or a parameter)
    /// or a bare word naming the method, the dataset or an id prefix.
    pub fn matches(&self, filter: &str) -> bool {
        let fields = self.fields();
        only_terms(filter).all(|term| self.matches_term(term, &fields))
    }
}

fn only_terms(filter: &str) -> impl Iterator<Item = &str> {
    filter.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// `--only` must mean something: every key is one runs have, and every term alone selects at
/// least one planned run; otherwise the error lists what exists.
pub fn check_only(filter: &str, planned: &[PlannedRun]) -> Result<(), BenchError> {
    let fields: Vec<BTreeMap<String, String>> = planned.iter().map(PlannedRun::fields).collect();
    let mut keys: Vec<&str> = vec!["dataset", "method", "max_new_tokens", "max_chars"];
    for spec in crate::decode::METHODS.iter().flat_map(|m| m.params) {
        if !keys.contains(&spec.name) {
            keys.push(spec.name);
        }
    }
    for term in only_terms(filter) {
        let key = term.split_once('=').map(|(k, _)| k.trim());
        if let Some(key) = key.filter(|k| !keys.contains(k)) {
            return Err(BenchError::Invalid(format!(
                "--only: unknown key {key:?}; expected one of {}",
                keys.join(", ")
            )));
        }
        if planned
            .iter()
            .zip(&fields)
            .any(|(run, f)| run.matches_term(term, f))
        {
            continue;
        }
        let shown = key.unwrap_or("method");
        let mut values: Vec<&str> = fields
            .iter()
            .filter_map(|f| f.get(shown).map(String::as_str))
            .collect();
        values.sort_unstable();
        values.dedup();
        let what = if key.is_some() {
            format!("{shown} takes {}", values.join(", "))
        } else {
            let mut datasets: Vec<&str> = fields.iter().map(|f| f["dataset"].as_str()).collect();
            datasets.sort_unstable();
            datasets.dedup();
            format!(
                "methods: {}; datasets: {}; or an id prefix",
                values.join(", "),
                datasets.join(", ")
            )
        };
        return Err(BenchError::Invalid(format!(
            "--only: {term:?} matches none of the {} planned runs ({what})",
            planned.len()
        )));
    }
    Ok(())
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
    /// A result is stored but does not verify (edited, truncated, stale): the next `run` redoes it.
    pub tampered: Vec<(PlannedRun, String)>,
    pub pending: Vec<PlannedRun>,
}

impl Status {
    /// Every run done and every stored result sound.
    pub fn healthy(&self) -> bool {
        self.failed.is_empty() && self.tampered.is_empty()
    }
}

pub fn status(planned: Vec<PlannedRun>, store: &Store) -> Status {
    let mut status = Status {
        done: Vec::new(),
        failed: Vec::new(),
        tampered: Vec::new(),
        pending: Vec::new(),
    };
    for run in planned {
        match store.read_result(&run.id) {
            Ok(Some(_)) => status.done.push(run),
            Err(problem) => status.tampered.push((run, problem.to_string())),
            Ok(None) => match store.read_failure(&run.id) {
                Some(error) => status.failed.push((run, error)),
                None => status.pending.push(run),
            },
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
