use std::path::PathBuf;

/// Everything that can go wrong while locating, loading or running a model.
/// Each variant names the file (and tensor) involved so a researcher can act on it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: unsupported architecture {found:?}; expected GPTNeoXForCausalLM (model_type \"gpt_neox\")")]
    UnknownArchitecture { path: PathBuf, found: String },
    #[error("{dir}: no weights found; expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json")]
    NoWeights { dir: PathBuf },
    #[error("{path}: cannot read weights ({message}); the file may be truncated or corrupt")]
    WeightFile { path: PathBuf, message: String },
    #[error("{files}: missing tensor {tensor}")]
    MissingTensor { files: String, tensor: String },
    #[error(
        "{path}: tensor {tensor} has shape {actual:?}, expected {expected:?} from config.json"
    )]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("hub {repo}@{revision}: {file}: {message}")]
    Hub {
        repo: String,
        revision: String,
        file: String,
        message: String,
    },
    #[error("device: {0}")]
    Device(String),
    #[error("cache: {0}")]
    Cache(String),
    #[error("sequence of {needed} positions exceeds max_position_embeddings = {max}")]
    TooLong { needed: usize, max: usize },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ModelError>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}
