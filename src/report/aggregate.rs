//! Results → polars frames: one row per run (`summary.csv`) and per run and prompt
//! (`per_prompt.csv`). Every statistic and the AR-baseline join are polars expressions over the
//! per-repeat records; the runner's own summary block is not reused, so the two are independent
//! computations of the same numbers (a test holds them equal).
//!
//! Timings are estimated over prompts: each prompt's repeats are averaged first, then mean, std
//! and the 95% Student-t interval are taken over prompts. Speedup's interval is paired by
//! prompt: the t-interval of the per-prompt log ratios (throughput over AR's on the same
//! prompt), exponentiated, around their geometric mean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde_json::Value;

use super::ReportError;
use crate::bench::identity::baseline_config;
use crate::bench::record::Record;
use crate::bench::result::RunResult;
use crate::bench::runner::short;
use crate::bench::stats::{t_975, RatioInterval};
use crate::decode::{Method, ParamKind, METHODS};
use crate::store::{self, Store};

/// `summary.csv`'s metric columns, after the identity and parameter columns, in this order.
const METRIC_COLUMNS: [&str; 39] = [
    "generations",
    "prompts_measured",
    "throughput_mean",
    "throughput_std",
    "throughput_ci95",
    "throughput_n",
    "speedup",
    "speedup_geomean",
    "speedup_ci95_low",
    "speedup_ci95_high",
    "ttft_ms_mean",
    "ttft_ms_std",
    "ttft_ms_ci95",
    "ttft_ms_n",
    "tpot_ms_mean",
    "tpot_ms_std",
    "tpot_ms_ci95",
    "tpot_ms_n",
    "tokens_per_target_pass",
    "draft_acceptance",
    "paper_acceptance",
    "mean_accepted_length",
    "rounds_per_generation",
    "target_passes_per_generation",
    "draft_time_fraction",
    "memory_kind",
    "memory_device",
    "peak_memory_mb",
    "weights_target_mb",
    "weights_draft_mb",
    "kv_target_mb",
    "kv_draft_mb",
    "rest_mb",
    "peak_rss_mb",
    "peak_memory_vs_ar_mb",
    "peak_memory_vs_ar_pct",
    "ar_peak_memory_mb",
    "ar_throughput_mean",
    "lossless_checked",
];

const MB: f64 = 1024.0 * 1024.0;

/// The aggregated results of an artifacts directory.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// One row per run, sorted by experiment, dataset, configuration and id.
    pub summary: DataFrame,
    /// One row per run and prompt (means over the repeats), with the speedup over AR's same prompt.
    pub per_prompt: DataFrame,
    /// Files under runs/ left out because they do not verify, each with why.
    pub skipped: Vec<crate::store::Problem>,
}

/// Reads every verifying result under `store` and aggregates it. A speculative run whose AR
/// baseline (same models, dataset, prompts, generation settings, repeats and device) is missing
/// is an error naming both ids.
pub fn aggregate(store: &Store) -> Result<Aggregate, ReportError> {
    let results = load_results(store)?;
    let runs = runs_frame(&results)?;
    let records = records_frame(&results)?;
    let per_prompt = per_prompt(records.clone().lazy(), runs.clone().lazy());
    let per_prompt_frame = per_prompt.clone().collect()?;
    let t_table = student_t_table(max_prompts(&results))?;
    let stats = run_statistics(records.lazy(), per_prompt_frame.clone().lazy(), &t_table)?;
    let summary = with_baseline(
        runs.clone()
            .lazy()
            .join(
                stats,
                [col("id")],
                [col("id")],
                JoinArgs::new(JoinType::Left),
            )
            .join(
                memory_frame(&results)?.lazy(),
                [col("id")],
                [col("id")],
                JoinArgs::new(JoinType::Left),
            ),
    )
    .join(
        speedup_intervals(&per_prompt_frame)?.lazy(),
        [col("id")],
        [col("id")],
        JoinArgs::new(JoinType::Left),
    )
    .select(
        runs.get_column_names()
            .into_iter()
            .map(|name| col(name.clone()))
            .chain(METRIC_COLUMNS.iter().map(|name| col(*name)))
            .collect::<Vec<_>>(),
    )
    .sort(
        ["experiment", "dataset", "config", "id"],
        SortMultipleOptions::default(),
    )
    .collect()?;
    check_baselines(&summary, store.root())?;
    Ok(Aggregate {
        summary,
        per_prompt: per_prompt_frame,
        skipped: store.verify()?,
    })
}

impl Aggregate {
    /// Writes `summary.csv` and `per_prompt.csv` into `dir`, each only when its bytes change.
    pub fn write_csv(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let mut written = Vec::new();
        for (name, frame) in [
            ("summary.csv", &self.summary),
            ("per_prompt.csv", &self.per_prompt),
        ] {
            let path = dir.join(name);
            if super::write_if_changed(&path, &csv_bytes(frame)?)? {
                written.push(path);
            }
        }
        Ok(written)
    }
}

fn csv_bytes(frame: &DataFrame) -> Result<Vec<u8>, ReportError> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(&mut frame.clone())?;
    Ok(bytes)
}

/// Every result that verifies, in id order; a result that does not verify, or is not a
/// result of this version (a missing `lossless` flag, say), is an error rather than a silently
/// missing row.
fn load_results(store: &Store) -> Result<Vec<RunResult>, ReportError> {
    let mut results = Vec::new();
    for id in store.done_ids()? {
        let path = store.result_path(&id);
        let Some(value) = store.read_result(&id)? else {
            return Err(ReportError::BadResult {
                path,
                message: "does not verify; run `dynatree verify`".into(),
            });
        };
        match RunResult::from_value(value) {
            Ok(result) => results.push(result),
            Err(e) => {
                return Err(ReportError::BadResult {
                    path,
                    message: format!(
                        "not a run result: {e}; run it again with `dynatree run --force`"
                    ),
                })
            }
        }
    }
    Ok(results)
}

fn max_prompts(results: &[RunResult]) -> usize {
    results.iter().map(|r| r.summary.prompts).max().unwrap_or(0)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A column of one value per result.
fn column<T>(name: &str, results: &[RunResult], f: impl Fn(&RunResult) -> T) -> Column
where
    Series: NamedFrom<Vec<T>, [T]>,
{
    Column::new(name.into(), results.iter().map(f).collect::<Vec<T>>())
}

/// The method of a result's config, for its label and parameter columns.
pub(super) fn method_of(config: &Value) -> Option<Method> {
    let mut tagged = config["params"].clone();
    tagged
        .as_object_mut()?
        .insert("method".into(), config["method"].clone());
    serde_json::from_value(tagged).ok()
}

/// A model's identity in one cell: `hub@commit`, or `local:` and a hash of its files.
fn model_cell(identity: &Value) -> Option<String> {
    match identity {
        Value::Null => None,
        v if v["hub"].is_string() => Some(format!(
            "{}@{}",
            v["hub"].as_str().unwrap_or_default(),
            v["commit"].as_str().unwrap_or_default()
        )),
        v => Some(format!(
            "local:{}",
            &store::sha256_hex(store::canonical_json(v).as_bytes())[..16]
        )),
    }
}

/// One column per parameter name of the registry (methods share `tau` and `max_nodes`), typed
/// by its kind; empty where a run's method lacks it.
fn param_columns(results: &[RunResult]) -> Vec<Column> {
    let mut seen: Vec<&str> = Vec::new();
    let mut columns = Vec::new();
    for spec in METHODS.iter().flat_map(|m| m.params) {
        if seen.contains(&spec.name) {
            continue;
        }
        seen.push(spec.name);
        let value = |r: &RunResult| r.config["params"][spec.name].clone();
        columns.push(match spec.kind {
            ParamKind::Count | ParamKind::Natural => {
                column(spec.name, results, |r| value(r).as_u64())
            }
            ParamKind::Probability => column(spec.name, results, |r| value(r).as_f64()),
            ParamKind::Switch => column(spec.name, results, |r| value(r).as_bool()),
            ParamKind::Schedule => column(spec.name, results, |r| text(&value(r))),
        });
    }
    columns
}

/// Identity, parameters and settings of each run: one row per result.
fn runs_frame(results: &[RunResult]) -> Result<DataFrame, ReportError> {
    let cfg = |r: &RunResult, path: &[&str]| path.iter().fold(&r.config, |v, k| &v[*k]).clone();
    let mut columns = vec![
        column("id", results, |r| r.id.clone()),
        column("experiment", results, |r| r.manifest.experiment.clone()),
        column("manifest", results, |r| {
            r.manifest.path.display().to_string()
        }),
        column("dataset", results, |r| r.manifest.dataset_label.clone()),
        column("dataset_kind", results, |r| {
            text(&cfg(r, &["dataset", "kind"]))
        }),
        column("method", results, |r| text(&r.config["method"])),
        column("config", results, |r| {
            method_of(&r.config).map(|m| m.describe())
        }),
        column("max_new_tokens", results, |r| {
            cfg(r, &["generation", "max_new_tokens"]).as_u64()
        }),
        column("stop_at_eos", results, |r| {
            cfg(r, &["generation", "stop_at_eos"]).as_bool()
        }),
        column("prompts", results, |r| {
            cfg(r, &["prompts", "count"]).as_u64()
        }),
        column("prompt_max_chars", results, |r| {
            cfg(r, &["prompts", "max_chars"]).as_u64()
        }),
        column("seed", results, |r| cfg(r, &["prompts", "seed"]).as_u64()),
        column("repeats", results, |r| cfg(r, &["repeats"]).as_u64()),
        column("warmup", results, |r| cfg(r, &["warmup"]).as_u64()),
        column("dtype", results, |r| text(&cfg(r, &["models", "dtype"]))),
        column("device_kind", results, |r| {
            text(&cfg(r, &["device", "kind"]))
        }),
        column("device_name", results, |r| {
            text(&cfg(r, &["device", "name"]))
        }),
        column("target", results, |r| {
            model_cell(&cfg(r, &["models", "target"]))
        }),
        column("draft", results, |r| {
            model_cell(&cfg(r, &["models", "draft"]))
        }),
        column("baseline_id", results, |r| {
            store::run_id(&baseline_config(&r.config))
        }),
        column("lossless", results, |r| r.lossless),
        column("acceptance_by_depth", results, acceptance_by_depth),
        column("git_commit", results, |r| r.provenance.git_commit.clone()),
        column("git_dirty", results, |r| r.provenance.git_dirty),
        column("end_time", results, |r| r.provenance.end_time.clone()),
    ];
    let at = columns
        .iter()
        .position(|c| c.name().as_str() == "max_new_tokens")
        .expect("a max_new_tokens column");
    for (i, param) in param_columns(results).into_iter().enumerate() {
        columns.insert(at + i, param);
    }
    Ok(DataFrame::new(results.len(), columns)?)
}

/// Acceptance by draft depth as `d1 d2 ...` (a list does not fit a CSV cell).
fn acceptance_by_depth(result: &RunResult) -> Option<String> {
    let depths = &result.summary.acceptance_by_depth;
    (!depths.is_empty()).then(|| {
        depths
            .iter()
            .map(|d| d.map_or("nan".into(), |v| format!("{v:.4}")))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// A records column: its name and how to read it off a record.
type RecordField<'a> = (&'a str, &'a dyn Fn(&Record) -> AnyValue<'static>);

/// One row per record (a prompt and a repeat) of every run.
fn records_frame(results: &[RunResult]) -> Result<DataFrame, ReportError> {
    let rows: Vec<(&str, &Record)> = results
        .iter()
        .flat_map(|result| result.records.iter().map(|r| (result.id.as_str(), r)))
        .collect();
    let col_of = |name: &str, f: &dyn Fn(&Record) -> AnyValue<'static>| {
        let values: Vec<AnyValue> = rows.iter().map(|(_, r)| f(r)).collect();
        Series::from_any_values(name.into(), &values, false).map(Column::from)
    };
    let u = |v: usize| AnyValue::UInt64(v as u64);
    let f = AnyValue::Float64;
    let opt_f = |v: Option<f64>| v.map_or(AnyValue::Null, AnyValue::Float64);
    let opt_u = |v: Option<u64>| v.map_or(AnyValue::Null, AnyValue::UInt64);
    let height = rows.len();
    let mut columns = vec![Column::new(
        "id".into(),
        rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
    )];
    let specs: [RecordField; 20] = [
        ("prompt_index", &|r| u(r.prompt_index)),
        ("repeat", &|r| u(r.repeat)),
        ("prompt_tokens", &|r| u(r.prompt_tokens)),
        ("new_tokens", &|r| u(r.new_tokens)),
        ("wall_s", &|r| f(r.wall_s)),
        ("ttft_ms", &|r| f(r.ttft_ms)),
        ("tpot_ms", &|r| opt_f(r.tpot_ms)),
        ("tokens_per_s", &|r| f(r.tokens_per_s)),
        ("target_passes", &|r| u(r.target_passes)),
        ("rounds", &|r| u(r.rounds)),
        ("drafted", &|r| u(r.drafted)),
        ("accepted", &|r| u(r.accepted)),
        ("paper_acceptance", &|r| opt_f(r.paper_acceptance)),
        ("draft_s", &|r| f(r.draft_s)),
        ("verify_s", &|r| f(r.verify_s)),
        ("lossless", &|r| AnyValue::Boolean(r.lossless)),
        ("peak_heap_bytes", &|r| {
            opt_u(r.peak_heap_bytes.map(|b| b as u64))
        }),
        ("peak_rss_kib", &|r| opt_u(r.peak_rss_kib)),
        ("kv_target_bytes", &|r| u(r.kv_target_bytes)),
        ("kv_draft_bytes", &|r| u(r.kv_draft_bytes)),
    ];
    for (name, f) in specs {
        columns.push(col_of(name, f)?);
    }
    columns.push(Column::new(
        "prompt_sha256".into(),
        rows.iter()
            .map(|(_, r)| r.prompt_sha256.as_str())
            .collect::<Vec<_>>(),
    ));
    columns.push(Column::new(
        "output_sha256".into(),
        rows.iter()
            .map(|(_, r)| r.output_sha256.as_str())
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new(height, columns)?)
}

fn sum_f64(name: &str) -> Expr {
    col(name).cast(DataType::Float64).sum()
}

/// `a / b`, null where `b` is zero.
fn ratio(a: Expr, b: Expr) -> Expr {
    when(b.clone().gt(lit(0.0)))
        .then(a / b)
        .otherwise(lit(NULL))
}

/// Per-run statistics: totals-based ratios over the records, and mean, sample std, n and the
/// 95% Student-t half-width of throughput, TTFT and TPOT over the per-prompt means.
fn run_statistics(
    records: LazyFrame,
    per_prompt: LazyFrame,
    t_table: &DataFrame,
) -> Result<LazyFrame, ReportError> {
    let totals = records.group_by_stable([col("id")]).agg([
        len().alias("generations"),
        ratio(sum_f64("new_tokens"), sum_f64("target_passes")).alias("tokens_per_target_pass"),
        ratio(sum_f64("accepted"), sum_f64("drafted")).alias("draft_acceptance"),
        ratio(sum_f64("accepted"), sum_f64("rounds")).alias("mean_accepted_length"),
        when(sum_f64("rounds").gt(lit(0.0)))
            .then(sum_f64("rounds") / len().cast(DataType::Float64))
            .otherwise(lit(NULL))
            .alias("rounds_per_generation"),
        (sum_f64("target_passes") / len().cast(DataType::Float64))
            .alias("target_passes_per_generation"),
        ratio(sum_f64("draft_s"), sum_f64("draft_s") + sum_f64("verify_s"))
            .alias("draft_time_fraction"),
    ]);
    let estimate = |source: &str, out: &str| {
        [
            col(source).mean().alias(format!("{out}_mean")),
            col(source).std(1).alias(format!("{out}_std")),
            col(source).count().alias(format!("{out}_n")),
        ]
    };
    let mut aggs = vec![
        len().alias("prompts_measured"),
        col("paper_acceptance").mean().alias("paper_acceptance"),
    ];
    aggs.extend(estimate("throughput_mean", "throughput"));
    aggs.extend(estimate("ttft_ms_mean", "ttft_ms"));
    aggs.extend(estimate("tpot_ms_mean", "tpot_ms"));
    let mut over_prompts = per_prompt.group_by_stable([col("id")]).agg(aggs);
    for out in ["throughput", "ttft_ms", "tpot_ms"] {
        over_prompts = with_ci95(over_prompts, t_table, out);
    }
    Ok(totals.join(
        over_prompts,
        [col("id")],
        [col("id")],
        JoinArgs::new(JoinType::Left),
    ))
}

/// Each run's memory figures in MB, as its result records them (kind and device beside).
fn memory_frame(results: &[RunResult]) -> Result<DataFrame, ReportError> {
    let mb = |bytes: u64| bytes as f64 / MB;
    let columns = vec![
        column("id", results, |r| r.id.clone()),
        column("memory_kind", results, |r| {
            serde_json::to_value(r.memory.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        }),
        column("memory_device", results, |r| r.memory.device.clone()),
        column("peak_memory_mb", results, |r| r.memory.peak_bytes.map(mb)),
        column("weights_target_mb", results, |r| {
            mb(r.memory.weights_target_bytes)
        }),
        column("weights_draft_mb", results, |r| {
            mb(r.memory.weights_draft_bytes)
        }),
        column("kv_target_mb", results, |r| mb(r.memory.kv_target_bytes)),
        column("kv_draft_mb", results, |r| mb(r.memory.kv_draft_bytes)),
        column("rest_mb", results, |r| {
            r.memory.rest_bytes.map(|b| b as f64 / MB)
        }),
        column("peak_rss_mb", results, |r| {
            r.memory.peak_rss_kib.map(|k| k as f64 / 1024.0)
        }),
        column("lossless_checked", results, |r| {
            r.lossless_check.generations_checked as u64
        }),
    ];
    Ok(DataFrame::new(results.len(), columns)?)
}

/// Per run: the geometric mean of the per-prompt speedups and its paired 95% interval
/// ([`RatioInterval`]).
fn speedup_intervals(per_prompt: &DataFrame) -> Result<DataFrame, ReportError> {
    let ids = per_prompt.column("id")?.str()?;
    let speedups = per_prompt.column("speedup")?.f64()?;
    let mut by_id: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (id, speedup) in ids.iter().zip(speedups.iter()) {
        if let (Some(id), Some(speedup)) = (id, speedup) {
            by_id.entry(id).or_default().push(speedup);
        }
    }
    let intervals: Vec<(&str, Option<RatioInterval>)> = by_id
        .iter()
        .map(|(id, ratios)| (*id, RatioInterval::of(ratios)))
        .collect();
    let field = |f: fn(&RatioInterval) -> f64| -> Vec<Option<f64>> {
        intervals.iter().map(|(_, i)| i.as_ref().map(f)).collect()
    };
    Ok(DataFrame::new(
        intervals.len(),
        vec![
            Column::new(
                "id".into(),
                intervals.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            ),
            Column::new("speedup_geomean".into(), field(|i| i.geomean)),
            Column::new("speedup_ci95_low".into(), field(|i| i.low)),
            Column::new("speedup_ci95_high".into(), field(|i| i.high)),
        ],
    )?)
}

/// n → the 97.5% Student-t quantile with n - 1 degrees of freedom, for n = 2..=max_n.
fn student_t_table(max_n: usize) -> Result<DataFrame, ReportError> {
    let n: Vec<u32> = (2..=max_n.max(2) as u32).collect();
    let t: Vec<f64> = n.iter().map(|&n| t_975(n as usize - 1)).collect();
    Ok(DataFrame::new(
        n.len(),
        vec![Column::new("n".into(), n), Column::new("t".into(), t)],
    )?)
}

/// Adds `{out}_ci95`; a single measurement has std 0 and half-width 0, as in the runner.
fn with_ci95(stats: LazyFrame, t_table: &DataFrame, out: &str) -> LazyFrame {
    let (n, std, t) = (format!("{out}_n"), format!("{out}_std"), format!("{out}_t"));
    let table = t_table
        .clone()
        .lazy()
        .select([col("n").alias(n.as_str()), col("t").alias(t.as_str())]);
    stats
        .with_column(col(n.as_str()).cast(DataType::UInt32))
        .join(
            table,
            [col(n.as_str())],
            [col(n.as_str())],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col(std.as_str()).fill_null(lit(0.0)),
            (col(t.as_str()) * col(std.as_str()) / col(n.as_str()).cast(DataType::Float64).sqrt())
                .fill_null(lit(0.0))
                .alias(format!("{out}_ci95")),
        ])
        .drop(by_name([t.as_str()], true, false))
}

/// Joins each run with the AR run it is measured against: speedup and memory change.
fn with_baseline(runs: LazyFrame) -> LazyFrame {
    let baseline = runs.clone().filter(col("method").eq(lit("ar"))).select([
        col("id").alias("baseline_id"),
        col("throughput_mean").alias("ar_throughput_mean"),
        col("peak_memory_mb").alias("ar_peak_memory_mb"),
    ]);
    runs.join(
        baseline,
        [col("baseline_id")],
        [col("baseline_id")],
        JoinArgs::new(JoinType::Left),
    )
    .with_columns([
        (col("throughput_mean") / col("ar_throughput_mean")).alias("speedup"),
        (col("peak_memory_mb") - col("ar_peak_memory_mb")).alias("peak_memory_vs_ar_mb"),
        ((col("peak_memory_mb") / col("ar_peak_memory_mb") - lit(1.0)) * lit(100.0))
            .alias("peak_memory_vs_ar_pct"),
    ])
}

/// Fails when a speculative run has no AR baseline: its speedup would be meaningless.
fn check_baselines(summary: &DataFrame, root: &Path) -> Result<(), ReportError> {
    let missing = summary
        .clone()
        .lazy()
        .filter(col("ar_throughput_mean").is_null())
        .select([col("id"), col("baseline_id"), col("dataset"), col("config")])
        .collect()?;
    if missing.height() == 0 {
        return Ok(());
    }
    let cell = |name: &str, i: usize| -> String {
        missing
            .column(name)
            .ok()
            .and_then(|c| c.str().ok().and_then(|s| s.get(i).map(str::to_string)))
            .unwrap_or_default()
    };
    let runs = (0..missing.height())
        .map(|i| {
            format!(
                "{} ({} {}) needs AR run {}",
                short(&cell("id", i)),
                cell("dataset", i),
                cell("config", i),
                short(&cell("baseline_id", i))
            )
        })
        .collect();
    Err(ReportError::MissingBaseline {
        dir: root.to_path_buf(),
        runs,
    })
}

/// Means over the repeats of each run's prompts, with the speedup over AR on the same prompt.
fn per_prompt(records: LazyFrame, runs: LazyFrame) -> LazyFrame {
    let per_prompt = records
        .group_by_stable([col("id"), col("prompt_index")])
        .agg([
            col("prompt_sha256").first(),
            col("prompt_tokens").first(),
            len().alias("repeats"),
            col("tokens_per_s").mean().alias("throughput_mean"),
            col("tokens_per_s").std(1).alias("throughput_std"),
            col("ttft_ms").mean().alias("ttft_ms_mean"),
            col("tpot_ms").mean().alias("tpot_ms_mean"),
            ratio(sum_f64("new_tokens"), sum_f64("target_passes")).alias("tokens_per_target_pass"),
            ratio(sum_f64("accepted"), sum_f64("drafted")).alias("draft_acceptance"),
            col("paper_acceptance").mean().alias("paper_acceptance"),
            col("lossless").all(true).alias("lossless"),
            col("output_sha256").n_unique().alias("distinct_outputs"),
        ])
        .join(
            runs.select([
                col("id"),
                col("experiment"),
                col("dataset"),
                col("method"),
                col("config"),
                col("baseline_id"),
            ]),
            [col("id")],
            [col("id")],
            JoinArgs::new(JoinType::Left),
        );
    let ar = per_prompt.clone().select([
        col("id").alias("baseline_id"),
        col("prompt_index"),
        col("throughput_mean").alias("ar_throughput_mean"),
    ]);
    per_prompt
        .join(
            ar,
            [col("baseline_id"), col("prompt_index")],
            [col("baseline_id"), col("prompt_index")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column((col("throughput_mean") / col("ar_throughput_mean")).alias("speedup"))
        .sort(
            ["experiment", "dataset", "config", "id", "prompt_index"],
            SortMultipleOptions::default(),
        )
}
