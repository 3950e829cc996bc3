use std::path::{Path, PathBuf};

use super::error::{ModelError, Result};

/// A Hugging Face `tokenizer.json`, encoding without added special tokens as Pythia expects.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The first token (in id order) that `other` maps to a different id or lacks, if any: two
    /// tokenizers agree on every prompt only when this is `None`.
    pub fn first_difference(&self, other: &TextTokenizer) -> Option<(String, u32, Option<u32>)> {
        let theirs = other.inner.get_vocab(true);
        let mut ours: Vec<(String, u32)> = self.inner.get_vocab(true).into_iter().collect();
        ours.sort_by_key(|(_, id)| *id);
        let missing = ours
            .into_iter()
            .map(|(token, id)| {
                let other_id = theirs.get(&token).copied();
                (token, id, other_id)
            })
            .find(|(_, id, other_id)| *other_id != Some(*id));
        missing.or_else(|| {
            (theirs.len() != self.inner.get_vocab_size(true)).then(|| {
                let extra = theirs
                    .iter()
                    .find(|(t, _)| self.inner.token_to_id(t).is_none());
                let (token, id) = extra.map_or((String::new(), 0), |(t, id)| (t.clone(), *id));
                (token, id, None)
            })
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, false).map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.error(e))
    }

    fn error(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}
