//! The appendix's tables, each a booktabs `tabular` ready for `\input`: `memory.tex` (the paper's
//! Table 7 layout), `speedup.tex`, `main.tex`, `latency.tex` and `sweep.tex`.

use super::latex::{
    best_marks, cell, escape, number, row, signed_percent, tabular, Better, Header,
};
use super::rows::{RunRow, Study};

/// Every table as (file name, text).
pub fn all(study: &Study, header: &Header) -> Vec<(&'static str, String)> {
    vec![
        ("memory.tex", memory(study, header)),
        ("speedup.tex", speedup(study, header)),
        ("main.tex", main(study, header)),
        ("latency.tex", latency(study, header)),
        ("sweep.tex", sweep(study, header)),
    ]
}

/// A number column: how to read it off a run, how to print it, which way is better.
pub struct Metric {
    pub title: &'static str,
    pub value: fn(&RunRow) -> Option<f64>,
    pub decimals: usize,
    pub unit: &'static str,
    pub better: Better,
}

pub const THROUGHPUT: Metric = Metric {
    title: "Throughput (t/s)",
    value: |r| Some(r.throughput),
    decimals: 1,
    unit: "",
    better: Better::Higher,
};
pub const SPEEDUP: Metric = Metric {
    title: "Speedup",
    value: |r| Some(r.speedup),
    decimals: 2,
    unit: r"$\times$",
    better: Better::Higher,
};
pub const ACCEPTANCE: Metric = Metric {
    title: r"Accept. (\%)",
    value: |r| r.acceptance.map(|a| a * 100.0),
    decimals: 1,
    unit: "",
    better: Better::Higher,
};
pub const TOKENS_PER_PASS: Metric = Metric {
    title: "Tokens/Iter.",
    value: |r| r.tokens_per_pass,
    decimals: 2,
    unit: "",
    better: Better::Higher,
};
pub const TTFT: Metric = Metric {
    title: "TTFT (ms)",
    value: |r| Some(r.ttft_ms),
    decimals: 2,
    unit: "",
    better: Better::Lower,
};
pub const TPOT: Metric = Metric {
    title: "TPOT (ms)",
    value: |r| r.tpot_ms,
    decimals: 2,
    unit: "",
    better: Better::Lower,
};
pub const MEMORY: Metric = Metric {
    title: "Peak Memory (MB)",
    value: |r| r.peak_heap_mb,
    decimals: 2,
    unit: "",
    better: Better::Lower,
};

/// Columns of `values` (one inner vector per column) printed with best marks, as rows of cells.
fn marked_columns(columns: &[(Vec<Option<f64>>, &Metric)]) -> Vec<Vec<String>> {
    let n = columns.first().map_or(0, |(v, _)| v.len());
    let marks: Vec<Vec<bool>> = columns
        .iter()
        .map(|(values, m)| best_marks(values, m.decimals, m.better))
        .collect();
    (0..n)
        .map(|i| {
            columns
                .iter()
                .zip(&marks)
                .map(|((values, m), marks)| cell(values[i], m.decimals, m.unit, marks[i]))
                .collect()
        })
        .collect()
}

fn label(study: &Study, c: usize, bold_proposed: bool) -> String {
    let config = &study.configs[c];
    let text = escape(&config.label);
    if bold_proposed && config.proposed {
        format!(r"\textbf{{{text}}}")
    } else {
        text
    }
}

/// Method | per dataset, each metric — with a two-level header (datasets over metrics).
fn by_dataset(study: &Study, header: &Header, metrics: &[&Metric]) -> String {
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
            let values = study
                .shown
                .iter()
                .map(|&c| study.cell(c, d).and_then(metric.value))
                .collect();
            columns.push((values, *metric));
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
    by_dataset(study, header, &[&THROUGHPUT, &SPEEDUP])
}

/// TTFT and TPOT per dataset.
fn latency(study: &Study, header: &Header) -> String {
    by_dataset(study, header, &[&TTFT, &TPOT])
}

/// One block of rows per dataset: throughput, speedup, acceptance and tokens per iteration.
fn main(study: &Study, header: &Header) -> String {
    let metrics = [&THROUGHPUT, &SPEEDUP, &ACCEPTANCE, &TOKENS_PER_PASS];
    let mut body = Vec::new();
    for (d, (_, name)) in study.datasets.iter().enumerate() {
        if d > 0 {
            body.push(r"\midrule".to_string());
        }
        body.push(format!(
            r"\multicolumn{{{}}}{{l}}{{\textit{{{}}}}} \\",
            metrics.len() + 1,
            escape(name)
        ));
        let columns: Vec<_> = metrics
            .iter()
            .map(|m| {
                let values = study
                    .shown
                    .iter()
                    .map(|&c| study.cell(c, d).and_then(m.value))
                    .collect();
                (values, *m)
            })
            .collect();
        for (&c, cells) in study.shown.iter().zip(marked_columns(&columns)) {
            body.push(row(&[vec![label(study, c, false)], cells].concat()));
        }
    }
    let mut head = vec!["Method".to_string()];
    head.extend(metrics.iter().map(|m| m.title.to_string()));
    tabular(header, "lrrrr", &[row(&head)], &body)
}

/// The paper's Table 7: peak memory per dataset, its average and the signed change vs AR.
fn memory(study: &Study, header: &Header) -> String {
    let n = study.datasets.len();
    let mut columns: Vec<(Vec<Option<f64>>, &Metric)> = (0..n)
        .map(|d| {
            let values = study
                .shown
                .iter()
                .map(|&c| study.cell(c, d).and_then(MEMORY.value))
                .collect();
            (values, &MEMORY)
        })
        .collect();
    let averages: Vec<Option<f64>> = study
        .shown
        .iter()
        .map(|&c| study.mean_over_datasets(c, MEMORY.value))
        .collect();
    let ar_average = study.ar_mean(MEMORY.value);
    columns.push((averages.clone(), &MEMORY));
    let body: Vec<String> = study
        .shown
        .iter()
        .zip(marked_columns(&columns))
        .zip(&averages)
        .map(|((&c, cells), average)| {
            let change = if study.configs[c].method.name() == "ar" {
                "---".to_string()
            } else {
                signed_percent(average.zip(ar_average).map(|(a, b)| (a / b - 1.0) * 100.0))
            };
            row(&[vec![label(study, c, true)], cells, vec![change]].concat())
        })
        .collect();
    let mut top = vec![
        String::new(),
        format!(r"\multicolumn{{{n}}}{{c}}{{Peak Memory (MB)}}"),
    ];
    top.extend([String::new(), String::new()]);
    let mut second = vec!["Method".to_string()];
    second.extend(study.datasets.iter().map(|(_, name)| escape(name)));
    second.extend(["Average (MB)".to_string(), "Rel. Change vs AR".to_string()]);
    let head = vec![
        row(&top),
        format!(r"\cmidrule(lr){{2-{}}}", n + 1),
        row(&second),
    ];
    tabular(header, &format!("l{}rr", "r".repeat(n)), &head, &body)
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
            .find(|c| c.method == run.method)
            .map_or_else(|| run.method.describe(), |c| c.label.clone())
    };
    let mut body = Vec::new();
    for length in &lengths {
        for (key, name) in &study.datasets {
            let best = study
                .all_rows
                .iter()
                .filter(|r| r.max_new_tokens == *length && &r.dataset_key == key)
                .filter(|r| r.method.name() != "ar")
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
