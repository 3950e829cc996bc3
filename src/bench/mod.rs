//! The bench stage: a manifest's grid turned into measured, content-addressed runs.

pub mod identity;
pub mod memory;
mod plan;
pub mod provenance;
pub mod record;
pub mod result;
pub mod runner;
pub mod stats;

use candle_core::Device;
use serde_json::{json, Value};

use crate::manifest::ManifestError;
use crate::store;
pub use plan::{check_context, check_only, plan, PlannedRun, Planner, RunState, StatusCounts};

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
