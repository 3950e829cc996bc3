//! A manifest's grid with every point's run id, streamed: planning holds one point at a time,
//! so `plan` and `status` take the same memory for ten runs or ten million.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::identity::{self, HashCache, Resolved, RunIds};
use super::{resolve_device, BenchError};
use crate::decode::{fits_context, Method};
use crate::grid::{Grid, GridPoint};
use crate::manifest::{Manifest, ManifestError, ModelRef};
use crate::model::{HubSettings, NeoxConfig};
use crate::store::Store;

/// One grid point with its identity.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub id: String,
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
}

/// An `--only` filter: comma-separated terms, all of which a run must match, each `key=value`
/// (dataset, method, a length or a parameter) or a bare word naming the method, the dataset or
/// an id prefix. It must mean something: every key is one runs have, and every term alone
/// selects at least one planned run.
pub struct OnlyFilter<'f> {
    terms: Vec<&'f str>,
    /// Per term: whether some run seen so far matched it.
    matched: Vec<bool>,
}

impl<'f> OnlyFilter<'f> {
    /// Refuses a key no run has, listing the keys there are.
    pub fn new(filter: &'f str) -> Result<Self, BenchError> {
        let mut keys: Vec<&str> = vec!["dataset", "method", "max_new_tokens", "max_chars"];
        for spec in crate::decode::METHODS.iter().flat_map(|m| m.params) {
            if !keys.contains(&spec.name) {
                keys.push(spec.name);
            }
        }
        let terms: Vec<&str> = filter
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        for (key, _) in terms.iter().filter_map(|t| t.split_once('=')) {
            let key = key.trim();
            if !keys.contains(&key) {
                return Err(BenchError::Invalid(format!(
                    "--only: unknown key {key:?}; expected one of {}",
                    keys.join(", ")
                )));
            }
        }
        let matched = vec![false; terms.len()];
        Ok(Self { terms, matched })
    }

    /// Whether `run` matches every term; notes each term it matches.
    pub fn select(&mut self, run: &PlannedRun) -> bool {
        let fields = run.fields();
        let mut all = true;
        for (term, hit) in self.terms.iter().zip(&mut self.matched) {
            let matches = run.matches_term(term, &fields);
            *hit |= matches;
            all &= matches;
        }
        all
    }

    /// Once every planned run was seen: a term that matched none is an error listing what
    /// exists.
    pub fn finish(&self, planner: &Planner) -> Result<(), BenchError> {
        let Some((term, _)) = self.terms.iter().zip(&self.matched).find(|(_, hit)| !**hit) else {
            return Ok(());
        };
        let key = term.split_once('=').map(|(k, _)| k.trim());
        Err(BenchError::Invalid(format!(
            "--only: {term:?} matches none of the {} planned runs ({})",
            planner.len(),
            what_exists(key, planner)?
        )))
    }
}

/// The values `key` takes among the runs (or, for a bare term, the methods and datasets).
fn what_exists(key: Option<&str>, planner: &Planner) -> Result<String, BenchError> {
    let shown = key.unwrap_or("method");
    let (mut values, mut datasets) = (BTreeSet::new(), BTreeSet::new());
    planner.try_each(|run| {
        let mut fields = run.fields();
        if let Some(value) = fields.remove(shown) {
            values.insert(value);
        }
        datasets.insert(run.point.dataset);
        Ok::<(), BenchError>(())
    })?;
    // Numbers in numeric order (2 before 10), then words.
    let join = |set: BTreeSet<String>| {
        let mut values: Vec<String> = set.into_iter().collect();
        values.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => x.total_cmp(&y),
            (x, y) => x.is_err().cmp(&y.is_err()).then_with(|| a.cmp(b)),
        });
        values.join(", ")
    };
    Ok(match key {
        Some(_) => format!("{shown} takes {}", join(values)),
        None => format!(
            "methods: {}; datasets: {}; or an id prefix",
            join(values),
            join(datasets)
        ),
    })
}

/// A manifest's checked grid and the identities its runs share, resolved once (local files
/// hashed, hub revisions resolved): what gives every point its id and config.
pub struct Planner<'m> {
    manifest: &'m Manifest,
    grid: Grid<'m>,
    resolved: Resolved,
}

impl<'m> Planner<'m> {
    pub fn new(
        manifest: &'m Manifest,
        artifacts: &Path,
        hub: &HubSettings,
    ) -> Result<Self, BenchError> {
        let grid = Grid::new(manifest)?;
        check_context(manifest, &grid, hub)?;
        let mut hashes = HashCache::open(&artifacts.join("cache/file-hashes.json"));
        let (_, device) = resolve_device(&manifest.models.device)?;
        let mut datasets = BTreeMap::new();
        // Every dataset of the sweep has points (its AR runs at least).
        for name in &manifest.sweep.dataset {
            let spec = &manifest.datasets[name];
            datasets.insert(name.clone(), identity::dataset_identity(spec, &mut hashes)?);
        }
        let mut model = |m| identity::model_identity(m, hub, &mut hashes);
        let target = model(&manifest.models.target)?;
        let draft = manifest.models.draft.as_ref().map(&mut model).transpose()?;
        hashes.save();
        let resolved = Resolved {
            target,
            draft,
            datasets,
            device,
        };
        Ok(Self {
            manifest,
            grid,
            resolved,
        })
    }

    pub fn manifest(&self) -> &'m Manifest {
        self.manifest
    }

    /// The number of planned runs.
    pub fn len(&self) -> usize {
        self.grid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grid.is_empty()
    }

    /// Everything that determines a run's numbers (its id is this object's hash).
    pub fn config(&self, point: &GridPoint) -> Value {
        identity::run_config(self.manifest, point, &self.resolved)
    }

    /// Calls `f` with every run in grid order, holding one at a time; stops at its first error.
    pub fn try_each<E: From<ManifestError>>(
        &self,
        mut f: impl FnMut(PlannedRun) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut ids = RunIds::new(self.manifest, &self.resolved);
        self.grid.try_each(|point| {
            let id = ids.id(&point);
            f(PlannedRun { id, point })
        })
    }

    /// Every run, in grid order.
    pub fn all(&self) -> Result<Vec<PlannedRun>, BenchError> {
        let mut runs = Vec::with_capacity(self.len());
        self.try_each(|run| {
            runs.push(run);
            Ok::<(), BenchError>(())
        })?;
        Ok(runs)
    }
}

/// Expands the grid and gives every point its id.
pub fn plan(
    manifest: &Manifest,
    artifacts: &Path,
    hub: &HubSettings,
) -> Result<Vec<PlannedRun>, BenchError> {
    Planner::new(manifest, artifacts, hub)?.all()
}

/// The models' context lengths (`max_position_embeddings`), as far as their configs are at
/// hand without loading or downloading anything: a local directory, or a hub model already in
/// the cache. `None` where unknown; a config that exists but does not parse is an error.
struct ContextLimits {
    target: Option<usize>,
    draft: Option<usize>,
}

impl ContextLimits {
    fn of(manifest: &Manifest, hub: &HubSettings) -> Result<Self, BenchError> {
        let limit = |model: &ModelRef| -> Result<Option<usize>, BenchError> {
            let dir = match model {
                ModelRef::Path { path } => Some(path.clone()),
                ModelRef::Hub {
                    hub: repo,
                    revision,
                } => crate::model::hub::cached_snapshot(repo, revision, hub)
                    .ok()
                    .map(|s| s.dir),
            };
            let Some(config) = dir.map(|d| d.join("config.json")).filter(|c| c.is_file()) else {
                return Ok(None);
            };
            Ok(Some(
                NeoxConfig::from_file(&config)?.max_position_embeddings,
            ))
        };
        Ok(Self {
            target: limit(&manifest.models.target)?,
            draft: manifest
                .models
                .draft
                .as_ref()
                .map(limit)
                .transpose()?
                .flatten(),
        })
    }

    fn for_method(&self, method: &Method) -> Option<usize> {
        let draft = self.draft.filter(|_| method.needs_draft());
        match (self.target, draft) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }
}

/// Refuses, before any work, a grid with a run that no prompt fits: one token of prompt, the
/// new tokens and what the method may draft beyond them must fit both models' contexts. (Runs
/// check again with the real prompt lengths before generating.)
pub fn check_context(
    manifest: &Manifest,
    grid: &Grid,
    hub: &HubSettings,
) -> Result<(), BenchError> {
    let limits = ContextLimits::of(manifest, hub)?;
    if limits.target.is_none() && limits.draft.is_none() {
        return Ok(());
    }
    grid.try_each(|point| {
        let Some(limit) = limits.for_method(&point.method) else {
            return Ok(());
        };
        fits_context(&point.method, limit, 1, point.max_new_tokens).map_err(|e| {
            BenchError::Invalid(format!(
                "{}: run {} max_new_tokens={} cannot fit: {e}",
                manifest.path.display(),
                point.method.describe(),
                point.max_new_tokens
            ))
        })
    })
}

/// Where one planned run stands in a store.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Done,
    /// Its last attempt failed with this message.
    Failed(String),
    /// A result is stored but does not verify (edited, truncated, stale): the next `run` redoes it.
    Tampered(String),
    Pending,
}

impl RunState {
    pub fn of(id: &str, store: &Store) -> Self {
        match store.read_result(id) {
            Ok(Some(_)) => Self::Done,
            Err(problem) => Self::Tampered(problem.to_string()),
            Ok(None) => match store.read_failure(id) {
                Some(error) => Self::Failed(error),
                None => Self::Pending,
            },
        }
    }
}

/// How many runs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub done: usize,
    pub failed: usize,
    pub tampered: usize,
    pub pending: usize,
}

impl StatusCounts {
    pub fn add(&mut self, state: &RunState) {
        match state {
            RunState::Done => self.done += 1,
            RunState::Failed(_) => self.failed += 1,
            RunState::Tampered(_) => self.tampered += 1,
            RunState::Pending => self.pending += 1,
        }
    }

    /// No run failed and every stored result is sound.
    pub fn healthy(&self) -> bool {
        self.failed == 0 && self.tampered == 0
    }
}
