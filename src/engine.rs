//! Loads a target (and optionally a draft) with its tokenizer and runs generations: the one
//! entry point the command line and the sweep runner share.

use std::path::PathBuf;

use candle_core::{DType, Device};
use serde::Serialize;

use crate::decode::{self, DecodeError, Generation, GenerationSettings, Method, Metrics, Round};
use crate::model::{GptNeox, HubSettings, ModelError, ModelFiles, ModelSource, TextTokenizer};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Incompatible(String),
    #[error("no tokenizer.json next to {0}; pass --tokenizer or give --prompt-ids")]
    NoTokenizer(String),
}

/// Which models to load, and how.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub target: ModelSource,
    pub draft: Option<ModelSource>,
    /// Overrides the target's own `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    pub dtype: DType,
    pub device: Device,
}

pub struct Engine {
    pub target: GptNeox,
    pub draft: Option<GptNeox>,
    pub tokenizer: Option<TextTokenizer>,
    pub target_files: ModelFiles,
    pub draft_files: Option<ModelFiles>,
}

impl Engine {
    pub fn load(spec: &EngineSpec, hub: &HubSettings) -> Result<Self, EngineError> {
        let target_files = ModelFiles::resolve(&spec.target, hub)?;
        let target = target_files.load(spec.dtype, &spec.device)?;
        let draft_files = spec
            .draft
            .as_ref()
            .map(|d| ModelFiles::resolve(d, hub))
            .transpose()?;
        let draft = draft_files
            .as_ref()
            .map(|f| f.load(spec.dtype, &spec.device))
            .transpose()?;
        let tokenizer_path = spec
            .tokenizer
            .clone()
            .or_else(|| target_files.tokenizer.clone());
        let tokenizer = tokenizer_path
            .map(|p| TextTokenizer::from_file(&p))
            .transpose()?;
        let engine = Self {
            target,
            draft,
            tokenizer,
            target_files,
            draft_files,
        };
        engine.check_compatible()?;
        Ok(engine)
    }

    /// The draft must score the same ids as the target, and both must cover the tokenizer.
    fn check_compatible(&self) -> Result<(), EngineError> {
        let target_vocab = self.target.config().vocab_size;
        if let (Some(draft), Some(files)) = (&self.draft, &self.draft_files) {
            let draft_vocab = draft.config().vocab_size;
            if draft_vocab < self.vocab_limit() {
                return Err(EngineError::Incompatible(format!(
                    "{}: draft vocab_size {draft_vocab} is smaller than the {} ids the target and tokenizer use",
                    files.config.display(),
                    self.vocab_limit()
                )));
            }
        }
        self.check_draft_tokenizer()?;
        if let Some(tok) = &self.tokenizer {
            if tok.vocab_size() > target_vocab {
                return Err(EngineError::Incompatible(format!(
                    "{}: tokenizer has {} ids but the target's vocab_size is {target_vocab}",
                    tok.path().display(),
                    tok.vocab_size()
                )));
            }
        }
        Ok(())
    }

    /// A draft trained with another tokenizer proposes ids that mean other tokens: refuse it.
    /// Equal vocabularies in different files (other normalizer or merges) are only warned about.
    fn check_draft_tokenizer(&self) -> Result<(), EngineError> {
        let (Some(ours), Some(path)) = (
            &self.tokenizer,
            self.draft_files.as_ref().and_then(|f| f.tokenizer.as_ref()),
        ) else {
            return Ok(());
        };
        let theirs = TextTokenizer::from_file(path)?;
        if let Some((token, id, other)) = ours.first_difference(&theirs) {
            let other = other.map_or_else(|| "absent".to_string(), |i| format!("id {i}"));
            return Err(EngineError::Incompatible(format!(
                "{}: the draft's tokenizer differs from {}: token {token:?} is id {id} there and {other} here; the draft must share the target's vocabulary",
                path.display(),
                ours.path().display()
            )));
        }
        let same_bytes = std::fs::read(path).ok() == std::fs::read(ours.path()).ok();
        if !same_bytes {
            eprintln!(
                "warning: {} and {} are different files with the same vocabulary; check that they tokenize alike",
                path.display(),
                ours.path().display()
            );
        }
        Ok(())
    }

    /// Ids the models may emit: the tokenizer's, never the embedding's padding rows.
    pub fn vocab_limit(&self) -> usize {
        let model_vocab = self.target.config().vocab_size;
        self.tokenizer
            .as_ref()
            .map_or(model_vocab, |t| t.vocab_size().min(model_vocab))
    }

    pub fn settings(&self, max_new_tokens: usize, stop_at_eos: bool) -> GenerationSettings {
        GenerationSettings {
            max_new_tokens,
            stop_at_eos,
            eos_token_id: self.target.config().eos_token_id,
            vocab_limit: self.vocab_limit(),
            trace_trees: false,
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        let tokenizer = self.require_tokenizer()?;
        Ok(tokenizer.encode(text)?)
    }

    fn require_tokenizer(&self) -> Result<&TextTokenizer, EngineError> {
        self.tokenizer
            .as_ref()
            .ok_or_else(|| EngineError::NoTokenizer(self.target_files.dir.display().to_string()))
    }

    pub fn generate(
        &self,
        method: &Method,
        prompt: &[u32],
        settings: &GenerationSettings,
    ) -> Result<Generation, EngineError> {
        Ok(decode::generate(
            method,
            &self.target,
            self.draft.as_ref(),
            prompt,
            settings,
        )?)
    }

    /// A generation with everything `dynatree generate --json` reports.
    pub fn report(
        &self,
        method: &Method,
        prompt: Vec<u32>,
        generation: Generation,
    ) -> Result<GenerateReport, EngineError> {
        let text = match &self.tokenizer {
            Some(t) => Some(t.decode(&generation.tokens)?),
            None => None,
        };
        Ok(GenerateReport {
            method: method.name().to_string(),
            params: method.params(),
            metrics: Metrics::of(&generation),
            prompt_ids: prompt,
            tokens: generation.tokens,
            text,
            rounds: generation.rounds,
        })
    }
}

/// The `--json` output of `dynatree generate`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub method: String,
    pub params: serde_json::Value,
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: Option<String>,
    pub rounds: Vec<Round>,
    pub metrics: Metrics,
}

impl GenerateReport {
    /// One line of figures for people.
    pub fn stats_line(&self) -> String {
        let m = &self.metrics;
        let mut line = format!(
            "{} {}: {} tokens in {:.3} s, {:.1} tokens/s, TTFT {:.1} ms",
            self.method, self.params, m.new_tokens, m.wall_s, m.tokens_per_s, m.ttft_ms
        );
        if let Some(tpot) = m.tpot_ms {
            line += &format!(", TPOT {tpot:.2} ms");
        }
        line += &format!(", {:.2} tokens/target pass", m.tokens_per_round);
        if let Some(rate) = m.draft_acceptance {
            line += &format!(", drafted-token acceptance {:.1}%", rate * 100.0);
        }
        line
    }
}
