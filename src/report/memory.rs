//! The memory tables: the paper's Table 7 (`memory.tex`: peak per dataset, its average and the
//! change against AR) and the breakdown beside it (`memory_breakdown.tex`: weights, caches and
//! the rest). Every figure says which memory it measured, and one table never mixes kinds.

use super::latex::{dataset_heading, escape, number, row, signed_percent, tabular, Header};
use super::rows::{MemoryRow, Study};
use super::tables::{label, marked_columns, MetricColumn, MEMORY};
use super::ReportError;
use crate::bench::runner::short;

/// The memory kind every shown run shares, and whether it was measured.
pub struct MemoryTables {
    /// `host_heap`, `gpu_allocated`.
    pub kind: String,
    pub device: String,
    /// False when the runs' device has no measurement of `kind` (then no numbers are printed).
    pub measured: bool,
    /// Per shown configuration: the mean peak over the datasets.
    averages: Vec<Option<f64>>,
    ar_average: Option<f64>,
}

impl MemoryTables {
    /// Refuses a study whose runs measured different kinds of memory, or where some runs have a
    /// peak and others none (an average over a subset would not be the paper's average).
    pub fn new(study: &Study) -> Result<Self, ReportError> {
        let runs: Vec<_> = study
            .shown
            .iter()
            .flat_map(|&c| (0..study.datasets.len()).filter_map(move |d| study.cell(c, d)))
            .collect();
        let first = runs.first().map(|r| &r.memory);
        let (kind, device) = first.map_or((String::new(), String::new()), |m| {
            (m.kind.clone(), m.device.clone())
        });
        if let Some(other) = runs
            .iter()
            .find(|r| r.memory.kind != kind || r.memory.device != device)
        {
            return Err(problem(format!(
                "runs measured different memory: {} on {} and {} on {} (run {}); one table cannot compare them",
                kind,
                device,
                other.memory.kind,
                other.memory.device,
                short(&other.id)
            )));
        }
        let measured = runs.iter().any(|r| r.memory.peak_mb.is_some());
        if let Some(missing) = runs.iter().find(|r| r.memory.peak_mb.is_none()) {
            if measured {
                return Err(problem(format!(
                    "run {} ({} {}) has no peak memory while others do; run it again",
                    short(&missing.id),
                    missing.dataset,
                    missing.method.describe()
                )));
            }
        }
        for &c in &study.shown {
            if let Some(d) = (0..study.datasets.len()).find(|&d| study.cell(c, d).is_none()) {
                return Err(problem(format!(
                    "{} has no run on {}: its average over the datasets would be over a subset",
                    study.configs[c].label, study.datasets[d].1
                )));
            }
        }
        let averages = study
            .shown
            .iter()
            .map(|&c| study.mean_over_datasets(c, MEMORY.value))
            .collect();
        Ok(Self {
            kind,
            device,
            measured,
            averages,
            ar_average: study.ar_mean(MEMORY.value),
        })
    }

    fn what(&self) -> String {
        match self.kind.as_str() {
            "host_heap" => format!("host heap high-water mark ({})", self.device),
            "gpu_allocated" => format!("GPU memory allocated, high-water mark ({})", self.device),
            other => format!("{other} ({})", self.device),
        }
    }

    fn not_measured(&self) -> String {
        format!(
            "not measured: this build has no measurement of {} on {}",
            self.kind, self.device
        )
    }

    pub fn peak_caption(&self) -> String {
        let mut caption = format!(
            "Peak memory in MB: the {}, reset before each generation with both models loaded (weights, key/value caches and activations), per dataset, its average over the datasets and the change relative to AR. The proposed method in bold.",
            escape(&self.what())
        );
        if self.kind == "host_heap" {
            caption.push_str(" The paper's Table 7 reports GPU memory allocated; these are host numbers from a CPU run.");
        }
        if !self.measured {
            caption = format!("Peak memory: {}.", escape(&self.not_measured()));
        }
        caption
    }

    pub fn breakdown_caption(&self) -> String {
        if !self.measured {
            return format!("Peak memory breakdown: {}.", escape(&self.not_measured()));
        }
        format!(
            "What the peak ({}) is made of, in MB: the weights of target and draft, the key/value caches of target and draft at their largest (sized by what the generation uses) and the rest (activations, logits, tree bookkeeping and whatever else the process holds, such as the tokenizer) = peak $-$ the others; then the change of the peak against AR on the same dataset.",
            escape(&self.what())
        )
    }

    /// The paper's Table 7: peak per dataset, average, signed change of the average vs AR.
    pub fn peak(&self, study: &Study, header: &Header) -> String {
        let n = study.datasets.len();
        let mut second = vec!["Method".to_string()];
        second.extend(study.datasets.iter().map(|(_, name)| escape(name)));
        second.extend(["Average (MB)".to_string(), "Rel. Change vs AR".to_string()]);
        let top = vec![
            String::new(),
            format!(r"\multicolumn{{{n}}}{{c}}{{Peak Memory (MB)}}"),
            String::new(),
            String::new(),
        ];
        let head = vec![
            row(&top),
            format!(r"\cmidrule(lr){{2-{}}}", n + 1),
            row(&second),
        ];
        let spec = format!("l{}rr", "r".repeat(n));
        if !self.measured {
            return tabular(header, &spec, &head, &[self.not_measured_row(n + 3)]);
        }
        let mut columns: Vec<MetricColumn> = (0..n)
            .map(|d| MetricColumn::of(study, d, &MEMORY))
            .collect();
        columns.push(MetricColumn {
            values: self.averages.clone(),
            spreads: vec![None; self.averages.len()],
            metric: &MEMORY,
        });
        let body: Vec<String> = study
            .shown
            .iter()
            .zip(marked_columns(&columns))
            .zip(&self.averages)
            .map(|((&c, cells), average)| {
                let change = if study.configs[c].method.name() == "ar" {
                    signed_percent(Some(0.0))
                } else {
                    signed_percent(
                        average
                            .zip(self.ar_average)
                            .map(|(a, b)| (a / b - 1.0) * 100.0),
                    )
                };
                row(&[vec![label(study, c, true)], cells, vec![change]].concat())
            })
            .collect();
        tabular(header, &spec, &head, &body)
    }

    /// One block per dataset: weights, caches, the rest, the peak and its change vs AR.
    pub fn breakdown(&self, study: &Study, header: &Header) -> String {
        let titles = [
            "Method",
            "Weights T",
            "Weights D",
            "KV T",
            "KV D",
            "Rest",
            "Peak",
            r"$\Delta$ AR (MB)",
            r"$\Delta$ AR (\%)",
        ];
        let head = vec![row(&titles.map(String::from))];
        let spec = format!("l{}", "r".repeat(titles.len() - 1));
        if !self.measured {
            return tabular(header, &spec, &head, &[self.not_measured_row(titles.len())]);
        }
        let mut body = Vec::new();
        for (d, (_, name)) in study.datasets.iter().enumerate() {
            if d > 0 {
                body.push(r"\midrule".to_string());
            }
            body.push(dataset_heading(titles.len(), name));
            let ar_peak = study
                .configs
                .iter()
                .position(|c| c.method.name() == "ar")
                .and_then(|c| study.cell(c, d))
                .and_then(|r| r.memory.peak_mb);
            for &c in &study.shown {
                let Some(run) = study.cell(c, d) else {
                    continue;
                };
                body.push(row(&breakdown_cells(
                    label(study, c, true),
                    &run.memory,
                    ar_peak,
                )));
            }
        }
        tabular(header, &spec, &head, &body)
    }

    fn not_measured_row(&self, width: usize) -> String {
        format!(
            r"\multicolumn{{{width}}}{{c}}{{\textit{{{}}}}} \\",
            escape(&self.not_measured())
        )
    }
}

fn breakdown_cells(label: String, m: &MemoryRow, ar_peak: Option<f64>) -> Vec<String> {
    let mb = |v: Option<f64>| number(v, 2);
    let delta = m.peak_mb.zip(ar_peak).map(|(p, a)| p - a);
    let delta_mb = match delta {
        Some(v) if v < 0.0 => format!("$-${}", number(Some(-v), 2)),
        Some(v) => format!("+{}", number(Some(v), 2)),
        None => number(None, 2),
    };
    vec![
        label,
        mb(Some(m.weights_target_mb)),
        mb(Some(m.weights_draft_mb)),
        mb(Some(m.kv_target_mb)),
        mb(Some(m.kv_draft_mb)),
        mb(m.rest_mb),
        mb(m.peak_mb),
        delta_mb,
        signed_percent(m.peak_mb.zip(ar_peak).map(|(p, a)| (p / a - 1.0) * 100.0)),
    ]
}

fn problem(message: String) -> ReportError {
    ReportError::Output {
        path: "tables/memory.tex".into(),
        message,
    }
}
