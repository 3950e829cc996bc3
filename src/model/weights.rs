//! Reads Pythia checkpoints: single or sharded safetensors, or PyTorch pickles.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::error::{io_err, ModelError, Result};

enum Store {
    Safetensors(MmapedSafetensors),
    Pth(candle_core::pickle::PthTensors),
}

/// The weight files of one checkpoint, with an index of which file holds which tensor.
pub struct WeightFiles {
    files: Vec<(PathBuf, Store)>,
    routing: HashMap<String, usize>,
}

impl WeightFiles {
    /// Finds the checkpoint's weight files in a model directory, preferring safetensors.
    pub fn locate(dir: &Path) -> Result<Vec<PathBuf>> {
        for (single, index) in [
            ("model.safetensors", "model.safetensors.index.json"),
            ("pytorch_model.bin", "pytorch_model.bin.index.json"),
        ] {
            if dir.join(single).is_file() {
                return Ok(vec![dir.join(single)]);
            }
            if dir.join(index).is_file() {
                let shards = shard_names(&dir.join(index))?;
                return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
            }
        }
        Err(ModelError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut routing = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let (store, names) = open_store(path)?;
            for name in names {
                routing.insert(name, index);
            }
            files.push((path.clone(), store));
        }
        Ok(Self { files, routing })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    /// Loads `name`, checks it has `shape`, converts it to `dtype` on `device`.
    pub fn tensor(
        &self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let Some(&index) = self.routing.get(name) else {
            return Err(ModelError::MissingTensor {
                files: self.file_list(),
                tensor: name.to_string(),
            });
        };
        let (path, store) = &self.files[index];
        let unreadable = |e: candle_core::Error| ModelError::WeightFile {
            path: path.clone(),
            message: format!("tensor {name}: {e}"),
        };
        let tensor = match store {
            Store::Safetensors(st) => st.load(name, &Device::Cpu).map_err(unreadable)?,
            Store::Pth(pth) => pth
                .get(name)
                .map_err(unreadable)?
                .expect("routing only lists present tensors"),
        };
        if tensor.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                path: path.clone(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                actual: tensor.dims().to_vec(),
            });
        }
        Ok(tensor.to_dtype(dtype)?.to_device(device)?)
    }

    fn file_list(&self) -> String {
        let names: Vec<String> = self
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        names.join(", ")
    }
}

fn open_store(path: &Path) -> Result<(Store, Vec<String>)> {
    std::fs::metadata(path).map_err(io_err(path))?;
    let unreadable = |e: candle_core::Error| ModelError::WeightFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    if is_safetensors {
        // SAFETY: the file is only read; candle keeps the mapping alive while in use. Deserializing
        // checks every tensor's offsets against the file size, so truncation fails here.
        let st = unsafe { MmapedSafetensors::new(path) }.map_err(unreadable)?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok((Store::Safetensors(st), names))
    } else {
        let pth = candle_core::pickle::PthTensors::new(path, None).map_err(unreadable)?;
        let names = pth.tensor_infos().keys().cloned().collect();
        Ok((Store::Pth(pth), names))
    }
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

fn shard_names(index: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(index).map_err(io_err(index))?;
    let parsed: ShardIndex = serde_json::from_str(&text).map_err(|e| ModelError::WeightFile {
        path: index.to_path_buf(),
        message: format!("invalid shard index: {e}"),
    })?;
    Ok(parsed.weight_map.into_values().collect())
}
