//! The appendix's tables, each a booktabs `tabular` ready for `\input`: `main.tex`,
//! `speedup.tex` (the published paper's main results), `efficiency.tex`, `latency.tex`,
//! `memory.tex` (the early draft's Table 7 layout), `memory_breakdown.tex`, `sweep.tex` and,
//! with Fixed Tree and DynaTree runs, `ablation.tex`.

use super::latex::{
    best_marks, cell, dataset_heading, escape, number, row, tabular, Better, Header,
};
use super::rows::{RunRow, Study};
use super::ReportError;

/// One table: its file stem, its text and the caption the appendix gives it.
pub struct Table {
    pub stem: &'static str,
    pub text: String,
    pub caption: String,
}

/// Every table, in appendix order.
pub fn all(
    study: &Study,
    header: &Header,
    memory: &super::memory::MemoryTables,
) -> Result<Vec<Table>, ReportError> {
    let notes = study.per_dataset_notes();
    let note = if notes.is_empty() {
        String::new()
    } else {
        format!(" {}.", super::latex::escape(&notes.join("; ")))
    };
    let table = |stem, text, caption: &str| Table {
        stem,
        text,
        caption: format!("{caption}{note}"),
    };
    let mut tables = vec![
        table(
            "main",
            main(study, header),
            r"Main results per dataset: throughput in generated tokens per second (mean $\pm$ standard deviation over prompts, each prompt's repeats averaged first), speedup over AR measured the same way, acceptance in both conventions (drafted: accepted $\div$ drafted tokens, as the paper's text defines it; paper: committed tokens including the target's own $\div$ (rounds $\times$ K, or D+2 for trees), as the authors' scripts compute it, which can exceed 100\%) and tokens committed per target forward pass. Best value per column in bold.",
        ),
        table(
            "speedup",
            speedup(study, header),
            r"Main results as the published paper lays them out: throughput (t/s, mean $\pm$ standard deviation over prompts) and speedup over AR measured the same way, per dataset.",
        ),
        table(
            "efficiency",
            super::paper_tables::efficiency(study, header),
            super::paper_tables::EFFICIENCY_CAPTION,
        ),
        table(
            "latency",
            latency(study, header),
            r"Latency, mean $\pm$ standard deviation over prompts: time to first token (TTFT: prefill of target and draft and the first round) and time per output token after it (TPOT), in milliseconds.",
        ),
        Table {
            stem: "memory",
            text: memory.peak(study, header),
            caption: memory.peak_caption(),
        },
        Table {
            stem: "memory_breakdown",
            text: memory.breakdown(study, header),
            caption: memory.breakdown_caption(),
        },
        table(
            "sweep",
            sweep(study, header),
            "The best speculative configuration per generation length and dataset, by speedup.",
        ),
    ];
    if let Some(text) = super::paper_tables::ablation(study, header) {
        tables.push(table(
            "ablation",
            text,
            &super::paper_tables::ablation_caption(study),
        ));
    }
    Ok(tables)
}

/// A number column: how to read it off a run, how to print it, which way is better.
pub struct Metric {
    pub title: &'static str,
    pub value: fn(&RunRow) -> Option<f64>,
    /// The standard deviation printed after the value (`133.4 $\pm$ 0.5`), when there is one.
    pub spread: Option<fn(&RunRow) -> Option<f64>>,
    pub decimals: usize,
    pub unit: &'static str,
    pub better: Better,
}

pub const THROUGHPUT: Metric = Metric {
    title: "Throughput (t/s)",
    value: |r| Some(r.throughput),
    spread: None,
    decimals: 1,
    unit: "",
    better: Better::Higher,
};
pub const SPEEDUP: Metric = Metric {
    title: "Speedup",
    value: |r| Some(r.speedup),
    spread: None,
    decimals: 2,
    unit: r"$\times$",
    better: Better::Higher,
};
/// Throughput as the paper's tables print it: mean ± std over prompts.
pub const THROUGHPUT_SPREAD: Metric = Metric {
    spread: Some(|r| Some(r.throughput_std)),
    ..THROUGHPUT
};
pub const DRAFT_ACCEPTANCE: Metric = Metric {
    title: r"Acc.\ drafted (\%)",
    value: |r| r.draft_acceptance.map(|a| a * 100.0),
    spread: None,
    decimals: 1,
    unit: "",
    better: Better::Higher,
};
pub const PAPER_ACCEPTANCE: Metric = Metric {
    title: r"Acc.\ paper (\%)",
    value: |r| r.paper_acceptance.map(|a| a * 100.0),
    spread: None,
    decimals: 1,
    unit: "",
    better: Better::Higher,
};
pub const TOKENS_PER_PASS: Metric = Metric {
    title: "Tokens/Iter.",
    value: |r| r.tokens_per_pass,
    spread: None,
    decimals: 2,
    unit: "",
    better: Better::Higher,
};
pub const TTFT: Metric = Metric {
    title: "TTFT (ms)",
    value: |r| Some(r.ttft_ms),
    spread: Some(|r| Some(r.ttft_ms_std)),
    decimals: 2,
    unit: "",
    better: Better::Lower,
};
pub const TPOT: Metric = Metric {
    title: "TPOT (ms)",
    value: |r| r.tpot_ms,
    spread: Some(|r| r.tpot_ms_std),
    decimals: 2,
    unit: "",
    better: Better::Lower,
};
pub const MEMORY: Metric = Metric {
    title: "Peak Memory (MB)",
    value: |r| r.memory.peak_mb,
    spread: None,
    decimals: 2,
    unit: "",
    better: Better::Lower,
};

/// A metric's values (and spreads) down the shown configurations on dataset `d`.
pub struct MetricColumn<'a> {
    pub values: Vec<Option<f64>>,
    pub spreads: Vec<Option<f64>>,
    pub metric: &'a Metric,
}

impl<'a> MetricColumn<'a> {
    pub fn of(study: &Study, d: usize, metric: &'a Metric) -> Self {
        let rows: Vec<Option<&RunRow>> = study.shown.iter().map(|&c| study.cell(c, d)).collect();
        Self {
            values: rows.iter().map(|r| r.and_then(metric.value)).collect(),
            spreads: rows
                .iter()
                .map(|r| r.zip(metric.spread).and_then(|(r, f)| f(r)))
                .collect(),
            metric,
        }
    }
}

/// Columns printed with best marks (on the value, not its spread), as rows of cells.
pub(super) fn marked_columns(columns: &[MetricColumn]) -> Vec<Vec<String>> {
    let n = columns.first().map_or(0, |c| c.values.len());
    let marks: Vec<Vec<bool>> = columns
        .iter()
        .map(|c| best_marks(&c.values, c.metric.decimals, c.metric.better))
        .collect();
    (0..n)
        .map(|i| {
            columns
                .iter()
                .zip(&marks)
                .map(|(c, marks)| {
                    let m = c.metric;
                    let value = cell(c.values[i], m.decimals, m.unit, marks[i]);
                    match c.spreads[i].filter(|_| c.values[i].is_some()) {
                        Some(std) => format!(r"{value} $\pm$ {}", number(Some(std), m.decimals)),
                        None => value,
                    }
                })
                .collect()
        })
        .collect()
}

pub(super) fn label(study: &Study, c: usize, bold_proposed: bool) -> String {
    let config = &study.configs[c];
    let text = escape(&config.label);
    if bold_proposed && config.proposed {
        format!(r"\textbf{{{text}}}")
    } else {
        text
    }
}

/// Method | per dataset, each metric — with a two-level header (datasets over metrics).
pub(super) fn by_dataset(study: &Study, header: &Header, metrics: &[&Metric]) -> String {
    let width = metrics.len();
    let mut top = vec![String::new()];
    let mut rules = Vec::new();
    for (d, (_, name)) in study.datasets.iter().enumerate() {
        top.push(format!(r"\multicolumn{{{width}}}{{c}}{{{}}}", escape(name)));
        let first = 2 + d * width;
        rules.push(format!(r"\cmidrule(lr){{{first}-{}}}", first + width - 1));
    }
    let mut second = vec!["Method".to_string()];
    let mut columns = Vec::new();
    for d in 0..study.datasets.len() {
        for metric in metrics {
            second.push(metric.title.to_string());
            columns.push(MetricColumn::of(study, d, metric));
        }
    }
    let cells = marked_columns(&columns);
    let body: Vec<String> = study
        .shown
        .iter()
        .zip(cells)
        .map(|(&c, cells)| row(&[vec![label(study, c, false)], cells].concat()))
        .collect();
    let spec = format!("l{}", "r".repeat(width * study.datasets.len()));
    let head = vec![row(&top), rules.join(" "), row(&second)];
    tabular(header, &spec, &head, &body)
}

/// The cross-dataset table: throughput and speedup per dataset.
fn speedup(study: &Study, header: &Header) -> String {
    by_dataset(study, header, &[&THROUGHPUT_SPREAD, &SPEEDUP])
}

/// TTFT and TPOT per dataset.
fn latency(study: &Study, header: &Header) -> String {
    by_dataset(study, header, &[&TTFT, &TPOT])
}

/// One block of rows per dataset: throughput, speedup, acceptance and tokens per iteration.
fn main(study: &Study, header: &Header) -> String {
    let metrics = [
        &THROUGHPUT_SPREAD,
        &SPEEDUP,
        &DRAFT_ACCEPTANCE,
        &PAPER_ACCEPTANCE,
        &TOKENS_PER_PASS,
    ];
    let mut body = Vec::new();
    for (d, (_, name)) in study.datasets.iter().enumerate() {
        if d > 0 {
            body.push(r"\midrule".to_string());
        }
        body.push(dataset_heading(metrics.len() + 1, name));
        let columns: Vec<_> = metrics
            .iter()
            .map(|m| MetricColumn::of(study, d, m))
            .collect();
        for (&c, cells) in study.shown.iter().zip(marked_columns(&columns)) {
            body.push(row(&[vec![label(study, c, false)], cells].concat()));
        }
    }
    let mut head = vec!["Method".to_string()];
    head.extend(metrics.iter().map(|m| m.title.to_string()));
    let spec = format!("l{}", "r".repeat(metrics.len()));
    tabular(header, &spec, &[row(&head)], &body)
}

/// The best speculative configuration per generation length and dataset, over every length
/// the manifest sweeps (one block when it has one).
fn sweep(study: &Study, header: &Header) -> String {
    let mut lengths: Vec<u64> = study.all_rows.iter().map(|r| r.max_new_tokens).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let label_of = |run: &RunRow| {
        study
            .configs
            .iter()
            .find(|c| c.covers(&run.method, &run.dataset_key))
            .map_or_else(|| run.method.describe(), |c| c.label.clone())
    };
    let mut body = Vec::new();
    for length in &lengths {
        for (key, name) in &study.datasets {
            let best = study
                .all_rows
                .iter()
                .filter(|r| r.max_new_tokens == *length && &r.dataset_key == key)
                .filter(|r| study.at_main_cap(r) && !r.method.is_baseline())
                .max_by(|a, b| a.speedup.total_cmp(&b.speedup));
            let Some(run) = best else { continue };
            body.push(row(&[
                length.to_string(),
                escape(name),
                escape(&label_of(run)),
                number(Some(run.throughput), THROUGHPUT.decimals),
                format!("{}$\\times$", number(Some(run.speedup), SPEEDUP.decimals)),
                number(run.tokens_per_pass, TOKENS_PER_PASS.decimals),
            ]));
        }
    }
    let speculative = study
        .configs
        .iter()
        .filter(|c| c.method.name() != "ar")
        .count();
    let head = row(&[
        "Tokens".into(),
        "Dataset".into(),
        format!("Best of {speculative} configurations"),
        THROUGHPUT.title.into(),
        SPEEDUP.title.into(),
        TOKENS_PER_PASS.title.into(),
    ]);
    tabular(header, "rllrrr", &[head], &body)
}
