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
mod memory;
mod memory_figure;
mod numbers;
mod paper_tables;
mod rows;
mod study_figures;
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
    let store = Store::open_read(artifacts)?;
    let aggregate = aggregate(&store)?;
    let mut written = Written::default();
    for path in aggregate.write_csv(artifacts)? {
        written.files.push(path.clone());
        written.changed.push(path);
    }
    let rows = manifest_rows(manifest, &planned, &aggregate)?;
    let study = rows::Study::new(manifest, rows);
    let header = latex::Header::new(manifest, &study);
    // Every text is built before the first file is written, so that an error (e.g. two labels
    // that make one command name) leaves the report directory as it was.
    let memory = memory::MemoryTables::new(&study)?;
    let tables = tables::all(&study, &header, &memory)?;
    let numbers = numbers::render(&study, &header)?;
    for table in &tables {
        written.put(
            out.join("tables").join(format!("{}.tex", table.stem)),
            table.text.as_bytes(),
        )?;
    }
    written.put(out.join("numbers.tex"), numbers.as_bytes())?;
    let figures = figures::all(&study, &header, &memory, &out.join("figures"), &mut written)?;
    written.put(
        out.join("appendix.tex"),
        appendix::render(&study, &header, &tables, &figures).as_bytes(),
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
    // Only an explicit `true` passes: a result that does not say is not lossless.
    let not_lossless: Vec<String> = rows
        .iter()
        .filter(|row| row.lossless != Some(true))
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

/// One line of `dynatree summary`: a configuration on a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    pub method: String,
    pub dataset: String,
    /// Generated tokens per second, mean over prompts and repeats.
    pub throughput: f64,
    /// Throughput over that of the AR run measured the same way.
    pub speedup: f64,
    /// Tokens committed per target forward pass (1 for AR).
    pub tokens_per_pass: Option<f64>,
    /// Peak memory during generation, both models loaded, of the kind `memory_kind` names.
    pub peak_memory_mb: Option<f64>,
    pub memory_kind: String,
}

/// Datasets whose labels make the same `numbers.tex` command names (`PG-19` and `PG 19` both
/// give `PGOneNine`), found before any run: `report` would otherwise fail at the end.
pub fn name_collisions(manifest: &Manifest) -> Result<(), ReportError> {
    let mut seen: std::collections::BTreeMap<String, &str> = Default::default();
    for key in &manifest.sweep.dataset {
        let label = manifest.datasets[key].label.as_str();
        let part = numbers::command_part(label);
        if let Some(other) = seen.insert(part.clone(), label) {
            return Err(ReportError::Output {
                path: manifest.path.clone(),
                message: format!(
                    "datasets labelled {other:?} and {label:?} would both be \\...{part} in numbers.tex; give them labels that differ in letters or digits"
                ),
            });
        }
    }
    Ok(())
}

/// The configurations the main tables show, on every dataset, at the first generation length:
/// what `report` puts first, without writing anything. Needs every run done and lossless.
pub fn summary(manifest: &Manifest, artifacts: &Path) -> Result<Vec<SummaryLine>, ReportError> {
    let planned = bench::plan(manifest, artifacts, &HubSettings::from_env())?;
    let aggregate = aggregate(&Store::open_read(artifacts)?)?;
    let study = rows::Study::new(manifest, manifest_rows(manifest, &planned, &aggregate)?);
    let mut lines = Vec::new();
    for &c in &study.shown {
        for d in 0..study.datasets.len() {
            if let Some(row) = study.cell(c, d) {
                lines.push(SummaryLine {
                    method: study.configs[c].label.clone(),
                    dataset: study.datasets[d].1.clone(),
                    throughput: row.throughput,
                    speedup: row.speedup,
                    tokens_per_pass: row.tokens_per_pass,
                    peak_memory_mb: row.memory.peak_mb,
                    memory_kind: row.memory.kind.clone(),
                });
            }
        }
    }
    Ok(lines)
}

/// `lines` as an aligned plain-text table for a terminal.
pub fn summary_table(lines: &[SummaryLine]) -> String {
    let number = |v: Option<f64>, decimals: usize| {
        v.filter(|v| v.is_finite())
            .map_or("-".to_string(), |v| format!("{v:.decimals$}"))
    };
    let header = [
        "method",
        "dataset",
        "tokens/s",
        "speedup",
        "tokens/round",
        "peak MB (kind)",
    ]
    .map(String::from);
    let body: Vec<[String; 6]> = lines
        .iter()
        .map(|l| {
            [
                l.method.clone(),
                l.dataset.clone(),
                number(Some(l.throughput), 1),
                format!("{}x", number(Some(l.speedup), 2)),
                number(l.tokens_per_pass, 2),
                match l.peak_memory_mb {
                    Some(mb) => format!("{mb:.1} ({})", l.memory_kind),
                    None => format!("- ({}: not measured)", l.memory_kind),
                },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |row: &[String; 6]| {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            // Text left-aligned, numbers right-aligned.
            .map(|(i, (cell, w))| {
                if i < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("{}\n", cells.join("  ").trim_end())
    };
    let mut out = render(&header);
    out.push_str(&format!(
        "{}\n",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    ));
    for row in &body {
        out.push_str(&render(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_table_aligns_columns_and_marks_missing_values() {
        let lines = [
            SummaryLine {
                method: "AR (baseline)".into(),
                dataset: "PG-19".into(),
                throughput: 512.345,
                speedup: 1.0,
                tokens_per_pass: Some(1.0),
                peak_memory_mb: None,
                memory_kind: "gpu_allocated".into(),
            },
            SummaryLine {
                method: "Linear K=6".into(),
                dataset: "WikiText-2".into(),
                throughput: 1024.0,
                speedup: 1.999,
                tokens_per_pass: Some(3.456),
                peak_memory_mb: Some(42.04),
                memory_kind: "host_heap".into(),
            },
        ];
        let table = summary_table(&lines);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert!(rows[0].starts_with("method         dataset"), "{table}");
        assert!(rows[2].starts_with("AR (baseline)  PG-19"), "{table}");
        assert!(
            rows[2].contains("512.3") && rows[2].ends_with("- (gpu_allocated: not measured)"),
            "{table}"
        );
        assert!(
            rows[3].contains("2.00x") && rows[3].contains("3.46"),
            "{table}"
        );
        assert!(rows[3].ends_with("42.0 (host_heap)"), "{table}");
        // Right-aligned numbers end in the same column.
        assert_eq!(
            rows[0].find("tokens/s").map(|i| i + 8),
            rows[3].find("1024.0").map(|i| i + 6)
        );
    }
}
