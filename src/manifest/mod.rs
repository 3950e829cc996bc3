//! Experiment manifests: one TOML file names the models, datasets, prompt and generation rules,
//! and the sweep of decoding methods; `grid::expand` turns it into runs.
//!
//! Parsing is strict because a manifest is the record of what an experiment ran: unknown keys,
//! wrong types, empty axes and rules that select nothing are errors, reported as
//! `FILE:LINE:COL: message` (1-based) so they can be fixed without guessing. The only defaults
//! are the ones listed on each field.

mod reader;
mod sweep;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::DeTable;

pub use crate::decode::{Param, ParamKind};
use reader::{Source, Table, Value};
pub use sweep::{axis_specs, Axis, AxisSpec, Exclude, MethodAxes, Sweep};

/// A parsed, validated manifest. `Serialize` records the resolved configuration next to
/// results (positions are left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// The file it was read from, as given to `load`/`parse`.
    pub path: PathBuf,
    pub experiment: Experiment,
    pub models: Models,
    /// By name, the key of `[datasets.NAME]`.
    pub datasets: BTreeMap<String, DatasetSpec>,
    pub prompts: PromptRules,
    pub generation: GenerationSpec,
    pub sweep: Sweep,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub name: String,
    /// Default "".
    pub description: String,
    /// Default 0.
    pub seed: u64,
    /// Measured repetitions of every run, at least 1.
    pub repeats: usize,
    /// Unmeasured runs first; default 0.
    pub warmup: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Models {
    pub target: ModelRef,
    /// Required when `sweep.method` lists a speculative method.
    pub draft: Option<ModelRef>,
    /// "f32", "f16" or "bf16".
    pub dtype: String,
    /// "auto", "cpu" or "cuda".
    pub device: String,
}

/// A model on the hub or in a local directory. Serialized as written: `{hub, revision}` or
/// `{path}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelRef {
    /// `revision` defaults to "main".
    Hub { hub: String, revision: String },
    /// Resolved against the manifest's directory.
    Path { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetSpec {
    /// Display name in tables and figures.
    pub label: String,
    /// "wikitext", "pg19" or "text": how prompts are cut from the rows.
    pub kind: String,
    /// Text column; default "text".
    pub column: String,
    /// What the dataset stands in for, when it is not the dataset its label names (the Austen
    /// novels standing in for PG-19): every table it feeds says so in its caption. Not part of
    /// a run's identity, like the label.
    pub stand_in: Option<String>,
    #[serde(flatten)]
    pub source: DatasetSource,
}

/// Where a dataset's files are. Hub files carry their sha256 so that a run is tied to exact
/// bytes whatever the hub serves later: pinned in the manifest, or, for a file the manifest
/// leaves unpinned, in `datasets/lock.toml` once `dynatree fetch --update-lock` has trusted it on
/// first use (see [`crate::data::lock::Lock::pin`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DatasetSource {
    /// `revision` defaults to "main"; `files` maps a file in the repository to its pin,
    /// "sha256:<hex>", or to `None` when the manifest lists it unpinned (`files = ["f.parquet"]`).
    Hub {
        hub: String,
        revision: String,
        files: BTreeMap<String, Option<String>>,
    },
    /// Resolved against the manifest's directory; `sha256` is "sha256:<hex>" when given.
    Path {
        path: PathBuf,
        sha256: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptRules {
    /// Prompts per dataset, at least 1.
    pub count: usize,
    /// Longest prompt in characters (each at least 1, distinct), per dataset key:
    /// `max_chars = 800`, a list (an axis of the grid, like generation lengths), or a table by
    /// dataset (`{ wikitext2 = 800, pg19 = 1000 }`) whose values are either.
    pub max_chars: BTreeMap<String, Vec<usize>>,
}

impl PromptRules {
    /// The prompt caps of `dataset`, in the order written.
    pub fn max_chars_on(&self, dataset: &str) -> &[usize] {
        self.max_chars.get(dataset).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationSpec {
    /// Generation lengths, each at least 1, distinct, in the order written: `max_new_tokens = 500`
    /// or a list (`[128, 256, 500]`), which makes the length an axis of the grid.
    pub max_new_tokens: Vec<usize>,
    /// Default false: the paper generates exactly `max_new_tokens`.
    pub stop_at_eos: bool,
}

/// Where an error is: the file, and the 1-based line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Displays as `FILE:LINE:COL: message`, or `FILE: message` when no position is known.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read the manifest: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not valid TOML.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    /// Valid TOML that is not a valid manifest.
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

impl ManifestError {
    pub fn location(&self) -> Location {
        match self {
            Self::Io { path, .. } => Location {
                file: path.clone(),
                line_col: None,
            },
            Self::Syntax { at, .. } | Self::Invalid { at, .. } => at.clone(),
        }
    }
}

type Result<T> = std::result::Result<T, ManifestError>;

/// Reads and validates a manifest file.
pub fn load(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Validates manifest text. `path` only names the source in errors and anchors relative paths
/// (they resolve against its directory).
pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
    let src = Source { text, file: path };
    let doc = DeTable::parse(text).map_err(|e| src.syntax(&e))?;
    let root = Table::root(
        &src,
        &doc,
        &[
            "experiment",
            "models",
            "datasets",
            "prompts",
            "generation",
            "sweep",
        ],
    )?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let experiment = experiment(&root.req("experiment")?)?;
    let models = models(&root.req("models")?, dir)?;
    let (datasets, dataset_spans) = datasets(&root.req("datasets")?, dir)?;
    let prompts = prompts(&root.req("prompts")?, &dataset_spans)?;
    let generation = generation(&root.req("generation")?)?;
    let context = sweep::Context {
        datasets: &dataset_spans,
        has_draft: models.draft.is_some(),
    };
    let sweep = sweep::parse(&root.req("sweep")?, &context)?;
    Ok(Manifest {
        path: path.to_path_buf(),
        experiment,
        models,
        datasets,
        prompts,
        generation,
        sweep,
    })
}

fn experiment(value: &Value) -> Result<Experiment> {
    let t = value.plain_table(&["name", "description", "seed", "repeats", "warmup"])?;
    Ok(Experiment {
        name: t.req("name")?.non_empty_str()?.to_string(),
        description: optional(&t, "description", |v| Ok(v.str()?.to_string()))?.unwrap_or_default(),
        seed: optional(&t, "seed", Value::u64)?.unwrap_or(0),
        repeats: t.req("repeats")?.count()?,
        warmup: optional(&t, "warmup", Value::usize)?.unwrap_or(0),
    })
}

fn models(value: &Value, dir: &Path) -> Result<Models> {
    let t = value.plain_table(&["target", "draft", "dtype", "device"])?;
    Ok(Models {
        target: model_ref(&t.req("target")?, dir)?,
        draft: optional(&t, "draft", |v| model_ref(v, dir))?,
        dtype: t.req("dtype")?.one_of(&["f32", "f16", "bf16"])?,
        device: t.req("device")?.one_of(&["auto", "cpu", "cuda"])?,
    })
}

fn model_ref(value: &Value, dir: &Path) -> Result<ModelRef> {
    let t = value.plain_table(&["hub", "revision", "path"])?;
    match origin(&t)? {
        Origin::Hub(hub) => Ok(ModelRef::Hub {
            hub: hub.non_empty_str()?.to_string(),
            revision: revision(&t)?,
        }),
        Origin::Path(path) => {
            reject_keys(&t, &["revision"], "a path model")?;
            Ok(ModelRef::Path {
                path: dir.join(path.non_empty_str()?),
            })
        }
    }
}

/// Whether a model or dataset comes from the hub or a local path: exactly one of the two.
enum Origin<'a> {
    Hub(Value<'a>),
    Path(Value<'a>),
}

fn origin<'a>(t: &Table<'a>) -> Result<Origin<'a>> {
    match (t.get("hub"), t.get("path")) {
        (Some(hub), None) => Ok(Origin::Hub(hub)),
        (None, Some(path)) => Ok(Origin::Path(path)),
        (Some(_), Some(path)) => Err(path.error("give either hub or path, not both")),
        (None, None) => Err(t.error(format!(
            "missing key \"hub\" or \"path\" in {}: give exactly one",
            t.label()
        ))),
    }
}

/// Keys that only apply to the other origin are errors rather than silently ignored.
fn reject_keys(t: &Table, keys: &[&str], what: &str) -> Result<()> {
    match keys.iter().find_map(|key| t.get(key)) {
        Some(value) => Err(value.error(format!("does not apply to {what}"))),
        None => Ok(()),
    }
}

fn revision(t: &Table) -> Result<String> {
    let revision = optional(t, "revision", |v| Ok(v.non_empty_str()?.to_string()))?;
    Ok(revision.unwrap_or_else(|| "main".to_string()))
}

type Datasets = (
    BTreeMap<String, DatasetSpec>,
    BTreeMap<String, Range<usize>>,
);

/// The datasets, and where each is defined (for "defined but unused" errors).
fn datasets(value: &Value, dir: &Path) -> Result<Datasets> {
    let t = value.map()?;
    let entries = t.entries();
    if entries.is_empty() {
        return Err(value.error("defines no dataset; add a [datasets.NAME] table"));
    }
    let mut specs = BTreeMap::new();
    let mut spans = BTreeMap::new();
    for (name, key_span, value) in entries {
        check_dataset_name(name, &key_span, &value)?;
        specs.insert(name.to_string(), dataset(&value, dir)?);
        spans.insert(name.to_string(), value.span());
    }
    Ok((specs, spans))
}

/// Dataset names appear in `sweep.dataset`, excludes and result files: keep them bare.
fn check_dataset_name(name: &str, key_span: &Range<usize>, value: &Value) -> Result<()> {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return Ok(());
    }
    Err(value.src.error(
        Some(key_span),
        format!("dataset name {name:?} must use only letters, digits, '_' and '-'"),
    ))
}

fn dataset(value: &Value, dir: &Path) -> Result<DatasetSpec> {
    let t = value.plain_table(&[
        "label", "kind", "column", "stand_in", "hub", "revision", "files", "path", "sha256",
    ])?;
    let label = t.req("label")?.non_empty_str()?.to_string();
    let kind = t.req("kind")?.one_of(&["wikitext", "pg19", "text"])?;
    let column = optional(&t, "column", |v| Ok(v.non_empty_str()?.to_string()))?;
    let stand_in = optional(&t, "stand_in", |v| Ok(v.non_empty_str()?.to_string()))?;
    let source = match origin(&t)? {
        Origin::Hub(hub) => {
            reject_keys(&t, &["sha256"], "a hub dataset (give files instead)")?;
            DatasetSource::Hub {
                hub: hub.non_empty_str()?.to_string(),
                revision: revision(&t)?,
                files: files(&t.req("files")?)?,
            }
        }
        Origin::Path(path) => {
            reject_keys(&t, &["revision", "files"], "a path dataset")?;
            DatasetSource::Path {
                path: dir.join(path.non_empty_str()?),
                sha256: optional(&t, "sha256", sha256)?,
            }
        }
    };
    Ok(DatasetSpec {
        label,
        kind,
        column: column.unwrap_or_else(|| "text".to_string()),
        stand_in,
        source,
    })
}

/// `files = { "dir/file.parquet" = "sha256:<hex>" }`, every file pinned, or
/// `files = ["dir/file.parquet"]`, every file left to be trusted on first use; at least one file.
fn files(value: &Value) -> Result<BTreeMap<String, Option<String>>> {
    if let Ok(items) = value.array() {
        let mut files = BTreeMap::new();
        for item in items {
            let file = item.non_empty_str()?;
            if files.insert(file.to_string(), None).is_some() {
                return Err(item.error(format!("{file:?} is listed twice")));
            }
        }
        if files.is_empty() {
            return Err(value.error("must name at least one file"));
        }
        return Ok(files);
    }
    let t = value.map()?;
    let entries = t.entries();
    if entries.is_empty() {
        return Err(value.error("must name at least one file"));
    }
    let mut files = BTreeMap::new();
    for (file, key_span, digest) in entries {
        if file.is_empty() {
            return Err(value
                .src
                .error(Some(&key_span), "file names must not be empty"));
        }
        files.insert(file.to_string(), Some(sha256(&digest)?));
    }
    Ok(files)
}

/// "sha256:" followed by 64 lowercase hex digits, the form the data stage compares against.
fn sha256(value: &Value) -> Result<String> {
    let text = value.str()?;
    let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if valid {
        Ok(text.to_string())
    } else {
        Err(value.error(format!(
            "expected \"sha256:\" followed by 64 lowercase hex digits, got {}",
            value.describe()
        )))
    }
}

fn prompts(value: &Value, datasets: &BTreeMap<String, Range<usize>>) -> Result<PromptRules> {
    let t = value.plain_table(&["count", "max_chars"])?;
    let caps = t.req("max_chars")?;
    let max_chars = if caps.describe() == "a table" {
        let by_dataset = caps.map()?;
        let mut out = BTreeMap::new();
        for (name, span, value) in by_dataset.entries() {
            if !datasets.contains_key(name) {
                return Err(by_dataset.error_at(
                    &span,
                    format!(
                        "prompts.max_chars: unknown dataset {name:?}; expected one of {}",
                        datasets.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            out.insert(name.to_string(), lengths(&value)?);
        }
        if let Some(missing) = datasets.keys().find(|d| !out.contains_key(*d)) {
            return Err(caps.error(format!(
                "prompts.max_chars gives no cap for dataset {missing:?}; give every dataset one"
            )));
        }
        out
    } else {
        let caps = lengths(&caps)?;
        datasets.keys().map(|d| (d.clone(), caps.clone())).collect()
    };
    Ok(PromptRules {
        count: t.req("count")?.count()?,
        max_chars,
    })
}

fn generation(value: &Value) -> Result<GenerationSpec> {
    let t = value.plain_table(&["max_new_tokens", "stop_at_eos"])?;
    Ok(GenerationSpec {
        max_new_tokens: lengths(&t.req("max_new_tokens")?)?,
        stop_at_eos: optional(&t, "stop_at_eos", Value::bool)?.unwrap_or(false),
    })
}

/// One length or a non-empty list of distinct lengths.
fn lengths(value: &Value) -> Result<Vec<usize>> {
    if value.describe() != "an array" {
        return Ok(vec![value.count()?]);
    }
    let mut lengths = Vec::new();
    for item in value.non_empty_array()? {
        let n = item.count()?;
        if lengths.contains(&n) {
            return Err(item.error(format!("{n} is listed twice")));
        }
        lengths.push(n);
    }
    Ok(lengths)
}

/// Reads a key that has a default (applied by the caller).
fn optional<'a, T>(
    t: &Table<'a>,
    key: &str,
    read: impl FnOnce(&Value<'a>) -> Result<T>,
) -> Result<Option<T>> {
    t.get(key).map(|value| read(&value)).transpose()
}

#[cfg(test)]
mod tests;
