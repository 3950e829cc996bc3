//! The report stage: aggregated results → CSV (`aggregate`), and for one manifest the LaTeX
//! tables, `numbers.tex`, figures and a stand-alone `appendix.tex` (`report`).
//!
//! Everything written is a pure function of the results, the manifest and the generator's
//! version and commit: no clock, so regenerating from unchanged results rewrites identical bytes,
//! and a file whose bytes would not change is not touched at all.

mod aggregate;
mod appendix;
mod figures;
mod labels;
mod latex;
mod numbers;
mod rows;
mod tables;

pub use aggregate::{aggregate, Aggregate};
pub use rows::RunRow;

use std::path::{Path, PathBuf};

use crate::bench::{self, BenchError, PlannedRun};
use crate::manifest::Manifest;
use crate::model::HubSettings;
use crate::store::{self, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("aggregating results: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("{}: {message}", path.display())]
    BadResult { path: PathBuf, message: String },
    #[error("{} speculative run(s) in {} have no AR baseline measured the same way (same models, dataset, prompts, generation settings, repeats and device), so they have no speedup:\n  {}\nrun the AR baseline first (`dynatree run MANIFEST --only method=ar`)", runs.len(), dir.display(), runs.join("\n  "))]
    MissingBaseline { dir: PathBuf, runs: Vec<String> },
    #[error("{}: {} of {} runs are not done (e.g. {}); run `dynatree run {}` first", manifest.display(), pending.len(), total, pending.iter().take(3).cloned().collect::<Vec<_>>().join(", "), manifest.display())]
    NotDone {
        manifest: PathBuf,
        pending: Vec<String>,
        total: usize,
    },
    #[error("{}: runs whose output differs from AR cannot be reported: {}", manifest.display(), ids.join(", "))]
    NotLossless { manifest: PathBuf, ids: Vec<String> },
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
}

impl ReportError {
    fn output(path: &Path, message: impl ToString) -> Self {
        Self::Output {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Writes `bytes` atomically (creating the directory) unless the file already holds them.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, ReportError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::output(dir, e))?;
    }
    Ok(store::write_if_changed(path, bytes)?)
}

/// What `report` produced: every file, and which of them changed.
#[derive(Debug, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
    pub changed: Vec<PathBuf>,
}

impl Written {
    fn put(&mut self, path: PathBuf, bytes: &[u8]) -> Result<(), ReportError> {
        if write_if_changed(&path, bytes)? {
            self.changed.push(path.clone());
        }
        self.files.push(path);
        Ok(())
    }
}

/// Aggregates `artifacts` (rewriting its CSVs when they change) and writes the report of
/// `manifest`'s runs under `out`: `tables/*.tex`, `numbers.tex`, `figures/*.{png,svg}` and
/// `appendix.tex`. Every run of the manifest must be done, lossless and have its AR baseline.
pub fn report(manifest: &Manifest, artifacts: &Path, out: &Path) -> Result<Written, ReportError> {
    let planned = bench::plan(manifest, artifacts, &HubSettings::from_env())?;
    let store = Store::open(artifacts)?;
    let aggregate = aggregate(&store)?;
    let mut written = Written::default();
    for path in aggregate.write_csv(artifacts)? {
        written.changed.push(path);
    }
    let rows = manifest_rows(manifest, &planned, &aggregate)?;
    let study = rows::Study::new(manifest, rows);
    let header = latex::Header::new(manifest, &study);
    for (name, text) in tables::all(&study, &header) {
        written.put(out.join("tables").join(name), text.as_bytes())?;
    }
    written.put(
        out.join("numbers.tex"),
        numbers::render(&study, &header)?.as_bytes(),
    )?;
    let figures = figures::all(&study, &header, &out.join("figures"), &mut written)?;
    written.put(
        out.join("appendix.tex"),
        appendix::render(&study, &header, &figures).as_bytes(),
    )?;
    Ok(written)
}

/// The manifest's runs, in grid order, from the aggregate.
fn manifest_rows(
    manifest: &Manifest,
    planned: &[PlannedRun],
    aggregate: &Aggregate,
) -> Result<Vec<RunRow>, ReportError> {
    let by_id = rows::by_id(&aggregate.summary)?;
    let pending: Vec<String> = planned
        .iter()
        .filter(|run| !by_id.contains_key(&run.id))
        .map(PlannedRun::label)
        .collect();
    if !pending.is_empty() {
        return Err(ReportError::NotDone {
            manifest: manifest.path.clone(),
            pending,
            total: planned.len(),
        });
    }
    let rows: Vec<RunRow> = planned
        .iter()
        .map(|run| RunRow {
            dataset_key: run.point.dataset.clone(),
            method: run.point.method.clone(),
            ..by_id[&run.id].clone()
        })
        .collect();
    let not_lossless: Vec<String> = rows
        .iter()
        .filter(|row| row.lossless == Some(false))
        .map(|row| row.id.clone())
        .collect();
    if !not_lossless.is_empty() {
        return Err(ReportError::NotLossless {
            manifest: manifest.path.clone(),
            ids: not_lossless,
        });
    }
    Ok(rows)
}
