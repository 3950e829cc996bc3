//! The model stage: locating checkpoints, loading GPT-NeoX weights, running blocks of tokens.

mod aligned;
mod attention;
pub mod cache;
pub mod config;
pub mod error;
mod heads;
pub mod hub;
mod kernels;
mod linear;
pub mod neox;
mod norm;
mod team;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

pub use aligned::vec_on_huge_pages;
pub use cache::{chain_parents, KvCache};
pub use config::NeoxConfig;
pub use error::{ModelError, Result};
pub use hub::{HubSettings, ModelSource};
pub use kernels::{fma_rate, read_sum, Isa, ReadStream};
pub use neox::GptNeox;
pub use tokenizer::TextTokenizer;
pub use weights::WeightFiles;

/// A model's files on local disk, and where they came from.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub source: ModelSource,
    pub dir: PathBuf,
    /// The hub commit the revision resolved to; `None` for a local directory.
    pub commit: Option<String>,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    pub fn resolve(source: &ModelSource, settings: &HubSettings) -> Result<Self> {
        let (dir, commit) = match source {
            ModelSource::Local(dir) => (dir.clone(), None),
            ModelSource::Hub { repo, revision } => {
                let snapshot = hub::fetch_model(repo, revision, settings)?;
                (snapshot.dir, Some(snapshot.commit))
            }
        };
        Self::in_dir(source.clone(), &dir, commit)
    }

    fn in_dir(source: ModelSource, dir: &Path, commit: Option<String>) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(ModelError::Io {
                path: config,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "config.json not found"),
            });
        }
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(Self {
            weights: WeightFiles::locate(dir)?,
            dir: dir.to_path_buf(),
            source,
            commit,
            config,
            tokenizer,
        })
    }

    /// Reads the config and weights into a model on `device`.
    pub fn load(&self, dtype: DType, device: &Device) -> Result<GptNeox> {
        let config = NeoxConfig::from_file(&self.config)?;
        let weights = WeightFiles::open(&self.weights)?;
        GptNeox::load(config, &weights, dtype, device)
    }
}

/// The rayon pool every forward pass runs in, one thread: the CPU kernels run on the compute
/// team (`team.rs`), and a second rayon thread woken by a candle op (rotary embeddings run
/// through rayon) competed with the team's worker for the same core, doubling some passes of
/// the tiny pair at random (a 2-token block: median 1401 µs, 629 µs with one thread). Inside
/// the pool, candle's rayon ops run inline instead of handing work to another thread and
/// sleeping until it is done. Candle's own matmul (dtypes other than f32 on CPU) then runs on
/// this one thread.
pub fn compute_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|i| format!("dynatree-compute-{i}"))
            .build()
            .expect("rayon pool starts")
    })
}

/// Threads the CPU kernels run on (the caller's included).
pub fn compute_threads() -> usize {
    team::team().threads()
}

/// Parses `cpu` or `cuda[:N]`; CUDA needs the `cuda` cargo feature and a GPU.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = cuda
                .strip_prefix("cuda:")
                .map(|n| {
                    n.parse::<usize>()
                        .map_err(|_| ModelError::Device(format!("bad CUDA ordinal in {cuda:?}")))
                })
                .transpose()?
                .unwrap_or(0);
            if !candle_core::utils::cuda_is_available() {
                return Err(ModelError::Device(format!(
                    "{cuda:?}: this build has no CUDA support; build with `make build-cuda` (cargo build --release --features cuda), or use device \"cpu\" or \"auto\""
                )));
            }
            Device::new_cuda(ordinal).map_err(|e| {
                ModelError::Device(format!(
                    "{cuda:?}: no usable GPU ({e}); check nvidia-smi and CUDA_VISIBLE_DEVICES, or use device \"cpu\" or \"auto\""
                ))
            })
        }
        other => Err(ModelError::Device(format!(
            "unknown device {other:?}; expected cpu, cuda[:N] or auto"
        ))),
    }
}

/// Parses `f32`, `f16` or `bf16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(ModelError::Device(format!(
            "unknown dtype {other:?}; expected f32, f16 or bf16"
        ))),
    }
}
