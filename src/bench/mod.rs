//! The bench stage: a manifest's grid turned into measured, content-addressed runs.

pub mod gpu_memory;
pub mod identity;
pub mod memory;
mod plan;
pub mod provenance;
pub mod record;
pub mod result;
pub mod roofline;
pub mod runner;
pub mod stats;

use candle_core::Device;
use serde_json::{json, Value};

use crate::manifest::ManifestError;
use crate::store;
pub use plan::{check_context, plan, OnlyFilter, PlannedRun, Planner, RunState, StatusCounts};

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

/// The device a manifest asks for, and its identity. `auto` is CUDA when this build has it and
/// a GPU answers, else the CPU with a one-line notice (once per process) saying why.
pub fn resolve_device(name: &str) -> Result<(Device, Value), BenchError> {
    let device = match name {
        "auto" => auto_device(),
        other => crate::model::parse_device(other)?,
    };
    let identity = match device {
        Device::Cpu => json!({ "kind": "cpu", "name": provenance::cpu_model() }),
        _ => {
            let gpu = provenance::gpu_description().unwrap_or_else(|| "unknown GPU".into());
            json!({ "kind": "cuda", "name": gpu })
        }
    };
    Ok((device, identity))
}

fn auto_device() -> Device {
    let why_cpu = if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(device) => return device,
            Err(e) => format!("no usable GPU ({e})"),
        }
    } else if provenance::gpu_description().is_some() {
        "a GPU is present but this build has no CUDA support (`make build-cuda`)".to_string()
    } else {
        "no CUDA in this build and no GPU".to_string()
    };
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| eprintln!("device auto: {why_cpu}; running on the CPU"));
    Device::Cpu
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

    /// Without the feature, `cuda` names the fix and `auto` falls back to the CPU.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_an_error_and_auto_is_the_cpu() {
        let err = resolve_device("cuda").unwrap_err().to_string();
        assert!(
            err.contains("this build has no CUDA support; build with `make build-cuda`"),
            "{err}"
        );
        assert!(resolve_device("cuda:1").is_err());
        let (device, identity) = resolve_device("auto").unwrap();
        assert!(device.is_cpu());
        assert_eq!(identity["kind"], "cpu");
        let err = resolve_device("tpu").unwrap_err().to_string();
        assert!(err.contains("expected cpu, cuda[:N] or auto"), "{err}");
    }

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
