//! The data stage: dataset files → texts → reproducible prompts.
//!
//! Prompt rules (versioned by [`PROMPT_RULES_VERSION`], which is part of every run's identity):
//! - `wikitext`: rows are the lines of WikiText; an article starts at a top-level heading row
//!   ` = Title = `; its paragraphs are the non-heading rows. Candidates are paragraphs of at
//!   least `max_chars / 2` characters, in file order.
//! - `pg19`: each row is a book; its paragraphs are blank-line separated, with line breaks inside
//!   a paragraph joined by spaces. Candidates as above, skipping each book's first 5% (front
//!   matter: title pages, contents, licence).
//! - `text`: each row (or the whole file, for a `.txt` path) is split into paragraphs like pg19,
//!   without skipping.
//! - Then `count` candidates are drawn without replacement by a SplitMix64-driven Fisher–Yates
//!   shuffle seeded with the manifest's seed, and each is cut to `max_chars` at the last word
//!   boundary.

pub mod fetch;
pub mod lock;

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};
use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::manifest::DatasetSpec;
use crate::model::HubSettings;

/// Bump when a rule above changes: every run's identity includes it.
pub const PROMPT_RULES_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read parquet: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("{path}: no column {column:?}; it has {available}")]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: String,
    },
    #[error("{path}: checksum mismatch: expected {expected}, found sha256:{actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "{path}: only {found} passages of at least {min_chars} characters for {wanted} prompts"
    )]
    TooFewPassages {
        path: PathBuf,
        found: usize,
        wanted: usize,
        min_chars: usize,
    },
    #[error("{0}")]
    HubChecksum(Box<HubMismatch>),
    #[error(
        "{file}: does not match {}: expected {expected}, actual {actual}; if the new bytes are intended, run `dynatree fetch --update-lock` to record them",
        lock.display()
    )]
    LockMismatch {
        file: String,
        lock: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{}: invalid lock file: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    #[error(
        "dataset {dataset}: {file} is pinned neither by the manifest nor by {}; trust it on first use with `dynatree fetch {} --update-lock` (or pin it in the manifest's files table)",
        lock.display(), manifest.display()
    )]
    Unpinned {
        dataset: String,
        file: String,
        lock: PathBuf,
        manifest: PathBuf,
    },
    #[error("unknown dataset kind {0:?}; expected wikitext, pg19 or text")]
    UnknownKind(String),
    #[error("hub dataset {repo}@{revision}: {file}: {message}")]
    Hub {
        repo: String,
        revision: String,
        file: String,
        message: String,
    },
}

/// A hub dataset file whose bytes differ from the manifest's pin.
#[derive(Debug, thiserror::Error)]
#[error(
    "hub dataset {repo}@{revision}: {file}: checksum mismatch with its pin: expected {expected}, actual sha256:{actual}; {removed}"
)]
pub struct HubMismatch {
    pub repo: String,
    pub revision: String,
    pub file: String,
    pub expected: String,
    pub actual: String,
    /// What happened to the bad file in the cache.
    pub removed: String,
}

/// One prompt, with where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub text: String,
    pub sha256: String,
}

/// How to draw prompts from a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRequest<'a> {
    pub kind: &'a str,
    pub count: usize,
    pub max_chars: usize,
    pub seed: u64,
}

pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err(path))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Checks a file against `sha256:<hex>`; nothing runs on unverified data.
pub fn verify_checksum(path: &Path, expected: &str) -> Result<(), DataError> {
    let actual = sha256_file(path)?;
    if expected.strip_prefix("sha256:") == Some(actual.as_str()) {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// A dataset file from the hub through hf-hub's cache: downloaded when missing (unless offline),
/// taken from the cache when offline or when the hub cannot be reached.
pub fn fetch_hub_file(
    repo: &str,
    revision: &str,
    file: &str,
    hub: &HubSettings,
) -> Result<PathBuf, DataError> {
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Dataset, revision.to_string());
    let err = |message: String| DataError::Hub {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        message,
    };
    let cached = || {
        Cache::new(hub.cache_dir.clone())
            .repo(hub_repo.clone())
            .get(file)
    };
    if hub.offline {
        return cached().ok_or_else(|| err("not in the cache and HF_HUB_OFFLINE is set".into()));
    }
    let api = hub.api(true).map_err(|e| err(e.to_string()))?;
    match api.repo(hub_repo.clone()).get(file) {
        Ok(path) => Ok(path),
        Err(online) => cached().ok_or_else(|| err(online.to_string())),
    }
}

/// A dataset's prompts as every run draws them: its files fetched and verified
/// ([`fetch::dataset_files`]), their texts loaded, and the manifest's prompt count, one of its
/// caps and its seed applied. `dynatree run` and `dynatree prompts` both use this.
pub fn dataset_prompts(
    spec: &DatasetSpec,
    count: usize,
    max_chars: usize,
    seed: u64,
    hub: &HubSettings,
) -> Result<Vec<Prompt>, DataError> {
    let mut texts = Vec::new();
    let mut first_path = PathBuf::new();
    for file in fetch::dataset_files(&spec.source, hub)? {
        texts.extend(load_texts(&file.local, &spec.column)?);
        if first_path.as_os_str().is_empty() {
            first_path = file.local;
        }
    }
    let request = PromptRequest {
        kind: &spec.kind,
        count,
        max_chars,
        seed,
    };
    build_prompts(&texts, &request, &first_path)
}

/// The texts of a dataset file: one per row of `column` for parquet, the whole file otherwise.
pub fn load_texts(path: &Path, column: &str) -> Result<Vec<String>, DataError> {
    if path.extension().is_none_or(|e| e != "parquet") {
        return Ok(vec![std::fs::read_to_string(path).map_err(io_err(path))?]);
    }
    let parquet_err = |e: PolarsError| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let frame = ParquetReader::new(file).finish().map_err(parquet_err)?;
    let Ok(series) = frame.column(column) else {
        let available: Vec<String> = frame
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        return Err(DataError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            available: available.join(", "),
        });
    };
    let strings = series.str().map_err(parquet_err)?;
    Ok(strings
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

/// Draws prompts from `texts` by the rule of `request.kind` (see the module docs).
pub fn build_prompts(
    texts: &[String],
    request: &PromptRequest,
    path: &Path,
) -> Result<Vec<Prompt>, DataError> {
    let min_chars = request.max_chars / 2;
    let passages = match request.kind {
        "wikitext" => wikitext_paragraphs(texts),
        "pg19" => texts
            .iter()
            .flat_map(|book| paragraphs(skip_front_matter(book)))
            .collect(),
        "text" => texts.iter().flat_map(|t| paragraphs(t)).collect(),
        other => return Err(DataError::UnknownKind(other.to_string())),
    };
    let candidates: Vec<String> = passages
        .into_iter()
        .filter(|p| p.chars().count() >= min_chars)
        .collect();
    if candidates.len() < request.count {
        return Err(DataError::TooFewPassages {
            path: path.to_path_buf(),
            found: candidates.len(),
            wanted: request.count,
            min_chars,
        });
    }
    let order = seeded_permutation(candidates.len(), request.seed);
    Ok(order[..request.count]
        .iter()
        .map(|&i| {
            let text = cut_at_word(&candidates[i], request.max_chars);
            let sha256 = format!("{:x}", Sha256::digest(text.as_bytes()));
            Prompt { text, sha256 }
        })
        .collect())
}

fn is_article_heading(row: &str) -> bool {
    let t = row.trim_end_matches('\n');
    t.starts_with(" = ") && t.ends_with(" = ") && !t.starts_with(" = = ")
}

/// WikiText rows are lines; headings (` = T = `, ` = = T = = `) are not passages.
fn wikitext_paragraphs(rows: &[String]) -> Vec<String> {
    let mut in_article = false;
    let mut out = Vec::new();
    for row in rows {
        if is_article_heading(row) {
            in_article = true;
            continue;
        }
        let text = row.trim();
        if in_article && !text.is_empty() && !text.starts_with("= ") {
            out.push(text.to_string());
        }
    }
    out
}

fn skip_front_matter(book: &str) -> &str {
    let mut start = book.len() / 20;
    while !book.is_char_boundary(start) {
        start += 1;
    }
    &book[start..]
}

/// Blank-line separated paragraphs, inner line breaks joined by single spaces.
fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// The longest prefix of at most `max_chars` characters that ends at a word boundary.
pub fn cut_at_word(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let end = text
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(i, _)| i);
    let prefix = &text[..end];
    let next_is_space = text[end..].starts_with(char::is_whitespace);
    let cut = if next_is_space {
        prefix
    } else {
        prefix
            .rfind(char::is_whitespace)
            .map_or(prefix, |i| &prefix[..i])
    };
    cut.trim_end().to_string()
}

/// Fisher–Yates over 0..n driven by SplitMix64 (fixed, documented, platform independent).
fn seeded_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_word_boundaries() {
        assert_eq!(cut_at_word("the quick brown fox", 9), "the quick");
        assert_eq!(cut_at_word("the quick brown fox", 12), "the quick");
        assert_eq!(cut_at_word("  short  ", 50), "short");
        assert_eq!(cut_at_word("àé îô ùû", 5), "àé îô");
    }

    #[test]
    fn wikitext_skips_headings_and_preamble() {
        let rows: Vec<String> = [
            "",
            " = Title = \n",
            "",
            " A paragraph . \n",
            " = = Section = = \n",
            " Another . \n",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            wikitext_paragraphs(&rows),
            vec!["A paragraph .", "Another ."]
        );
    }

    #[test]
    fn prompts_are_seeded_and_distinct() {
        let texts = vec![(0..40)
            .map(|i| format!("paragraph number {i} with words"))
            .collect::<Vec<_>>()
            .join("\n\n")];
        let request = |seed| PromptRequest {
            kind: "text",
            count: 5,
            max_chars: 40,
            seed,
        };
        let a = build_prompts(&texts, &request(0), Path::new("t.txt")).unwrap();
        assert_eq!(
            a,
            build_prompts(&texts, &request(0), Path::new("t.txt")).unwrap()
        );
        assert_ne!(
            a,
            build_prompts(&texts, &request(1), Path::new("t.txt")).unwrap()
        );
        let unique: std::collections::BTreeSet<_> = a.iter().map(|p| &p.sha256).collect();
        assert_eq!(unique.len(), 5);
        let too_many = PromptRequest {
            count: 41,
            ..request(0)
        };
        assert!(build_prompts(&texts, &too_many, Path::new("t.txt")).is_err());
    }

    #[test]
    fn checksum_mismatch_names_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "abc").unwrap();
        let good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_checksum(&path, good).unwrap();
        let msg = verify_checksum(&path, &good.replace("ba78", "0000"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("f.txt") && msg.contains("sha256:0000") && msg.contains("ba7816"),
            "{msg}"
        );
    }
}
