//! The aggregate's rows for one manifest, typed, and the study they form: datasets in manifest
//! order, method configurations in grid order with their labels.

use std::collections::HashMap;

use polars::prelude::*;

use super::labels;
use super::ReportError;
use crate::decode::Method;
use crate::manifest::Manifest;

/// One run's numbers, as `summary.csv` holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    /// The manifest's dataset key (set from the plan) and the dataset's label.
    pub dataset_key: String,
    pub dataset: String,
    pub method: Method,
    pub max_new_tokens: u64,
    /// Mean over prompts (each prompt's repeats averaged first), with the std over prompts and
    /// the 95% interval half-width.
    pub throughput: f64,
    pub throughput_std: f64,
    pub throughput_ci95: f64,
    pub speedup: f64,
    /// 95% interval of the speedup, paired by prompt (see `aggregate`).
    pub speedup_ci95: Option<(f64, f64)>,
    pub ttft_ms: f64,
    pub ttft_ms_std: f64,
    pub tpot_ms: Option<f64>,
    pub tpot_ms_std: Option<f64>,
    pub tokens_per_pass: Option<f64>,
    pub draft_acceptance: Option<f64>,
    pub paper_acceptance: Option<f64>,
    pub mean_accepted_length: Option<f64>,
    pub memory: MemoryRow,
    pub generations: u64,
    pub lossless: Option<bool>,
    pub device: String,
    pub end_time: String,
}

/// A run's memory in MB and what it measured (`host_heap`, `gpu_allocated`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow {
    pub kind: String,
    pub device: String,
    /// `None`: not measured on this device.
    pub peak_mb: Option<f64>,
    pub weights_target_mb: f64,
    pub weights_draft_mb: f64,
    pub kv_target_mb: f64,
    pub kv_draft_mb: f64,
    pub rest_mb: Option<f64>,
}

fn cell_f64(frame: &DataFrame, name: &str, i: usize) -> Result<Option<f64>, ReportError> {
    Ok(frame.column(name)?.cast(&DataType::Float64)?.f64()?.get(i))
}

fn cell_str(frame: &DataFrame, name: &str, i: usize) -> Result<String, ReportError> {
    Ok(frame
        .column(name)?
        .str()?
        .get(i)
        .unwrap_or_default()
        .to_string())
}

/// Every row of `summary`, by run id.
pub fn by_id(summary: &DataFrame) -> Result<HashMap<String, RunRow>, ReportError> {
    let mut rows = HashMap::with_capacity(summary.height());
    for i in 0..summary.height() {
        let f = |name: &str| cell_f64(summary, name, i);
        let s = |name: &str| cell_str(summary, name, i);
        let id = s("id")?;
        let memory = MemoryRow {
            kind: s("memory_kind")?,
            device: s("memory_device")?,
            peak_mb: f("peak_memory_mb")?,
            weights_target_mb: f("weights_target_mb")?.unwrap_or_default(),
            weights_draft_mb: f("weights_draft_mb")?.unwrap_or_default(),
            kv_target_mb: f("kv_target_mb")?.unwrap_or_default(),
            kv_draft_mb: f("kv_draft_mb")?.unwrap_or_default(),
            rest_mb: f("rest_mb")?,
        };
        let row = RunRow {
            dataset_key: String::new(),
            dataset: s("dataset")?,
            method: Method::Ar,
            max_new_tokens: f("max_new_tokens")?.unwrap_or_default() as u64,
            throughput: f("throughput_mean")?.unwrap_or(f64::NAN),
            throughput_std: f("throughput_std")?.unwrap_or(f64::NAN),
            throughput_ci95: f("throughput_ci95")?.unwrap_or(f64::NAN),
            speedup: f("speedup")?.unwrap_or(f64::NAN),
            speedup_ci95: f("speedup_ci95_low")?.zip(f("speedup_ci95_high")?),
            ttft_ms: f("ttft_ms_mean")?.unwrap_or(f64::NAN),
            ttft_ms_std: f("ttft_ms_std")?.unwrap_or(f64::NAN),
            tpot_ms: f("tpot_ms_mean")?,
            tpot_ms_std: f("tpot_ms_std")?,
            tokens_per_pass: f("tokens_per_target_pass")?,
            draft_acceptance: f("draft_acceptance")?,
            paper_acceptance: f("paper_acceptance")?,
            mean_accepted_length: f("mean_accepted_length")?,
            memory,
            generations: f("generations")?.unwrap_or_default() as u64,
            lossless: summary.column("lossless")?.bool()?.get(i),
            device: format!("{} ({})", s("device_kind")?, s("device_name")?),
            end_time: s("end_time")?,
            id: id.clone(),
        };
        rows.insert(id, row);
    }
    Ok(rows)
}

/// One method configuration (a method with all its parameters) as a table row.
#[derive(Debug, Clone)]
pub struct Config {
    pub method: Method,
    pub label: String,
    /// The method the study proposes (DynaTree): set in bold where the paper does.
    pub proposed: bool,
}

/// A manifest's runs arranged as configurations × datasets.
#[derive(Debug)]
pub struct Study {
    pub experiment: String,
    /// (key, label) in `sweep.dataset` order.
    pub datasets: Vec<(String, String)>,
    /// (label, what it really is) of the datasets that stand in for another (`stand_in`).
    pub stand_ins: Vec<(String, String)>,
    /// The generation length of the main tables and figures: the manifest's first.
    pub length: u64,
    /// The runs at `length`; `all_rows` has every length (the sweep table and the header).
    pub rows: Vec<RunRow>,
    pub all_rows: Vec<RunRow>,
    pub configs: Vec<Config>,
    /// The configurations the main tables show: all of a method's when it has few, else its
    /// best by mean speedup over the datasets (so a 40-point sweep does not flood the tables).
    pub shown: Vec<usize>,
}

/// A method with more configurations than this is represented by its best one.
const MAX_SHOWN_PER_METHOD: usize = 4;

impl Study {
    pub fn new(manifest: &Manifest, all_rows: Vec<RunRow>) -> Self {
        let length = manifest.generation.max_new_tokens[0] as u64;
        let rows: Vec<RunRow> = all_rows
            .iter()
            .filter(|r| r.max_new_tokens == length)
            .cloned()
            .collect();
        let datasets = manifest
            .sweep
            .dataset
            .iter()
            .map(|key| (key.clone(), manifest.datasets[key].label.clone()))
            .collect();
        let stand_ins = manifest
            .sweep
            .dataset
            .iter()
            .map(|key| &manifest.datasets[key])
            .filter_map(|spec| Some((spec.label.clone(), spec.stand_in.clone()?)))
            .collect();
        let mut methods: Vec<Method> = Vec::new();
        for row in &rows {
            if !methods.contains(&row.method) {
                methods.push(row.method.clone());
            }
        }
        let configs = labels::label_all(&methods)
            .into_iter()
            .zip(methods)
            .map(|(label, method)| Config {
                proposed: method.name() == "dynatree",
                method,
                label,
            })
            .collect();
        let mut study = Self {
            experiment: manifest.experiment.name.clone(),
            datasets,
            stand_ins,
            length,
            rows,
            all_rows,
            configs,
            shown: Vec::new(),
        };
        study.shown = study.select_shown();
        study
    }

    /// The run of configuration `c` on dataset `d` (indices into `configs` and `datasets`).
    pub fn cell(&self, c: usize, d: usize) -> Option<&RunRow> {
        let (key, _) = &self.datasets[d];
        let method = &self.configs[c].method;
        self.rows
            .iter()
            .find(|r| &r.dataset_key == key && &r.method == method)
    }

    /// Mean of `f` over the datasets where configuration `c` ran.
    pub fn mean_over_datasets(&self, c: usize, f: impl Fn(&RunRow) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = (0..self.datasets.len())
            .filter_map(|d| self.cell(c, d).and_then(&f))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// [`Study::mean_over_datasets`] of the AR baseline.
    pub fn ar_mean(&self, f: impl Fn(&RunRow) -> Option<f64>) -> Option<f64> {
        let ar = self.configs.iter().position(|c| c.method == Method::Ar)?;
        self.mean_over_datasets(ar, f)
    }

    fn select_shown(&self) -> Vec<usize> {
        let mut shown = Vec::new();
        for name in Method::NAMES {
            let of_method: Vec<usize> = (0..self.configs.len())
                .filter(|&c| self.configs[c].method.name() == name)
                .collect();
            if of_method.len() <= MAX_SHOWN_PER_METHOD {
                shown.extend(of_method);
            } else if let Some(best) = self.best_by(&of_method, |r| Some(r.speedup)) {
                shown.push(best);
            }
        }
        shown
    }

    /// The configuration among `candidates` with the highest mean of `f` over datasets.
    pub fn best_by(
        &self,
        candidates: &[usize],
        f: impl Fn(&RunRow) -> Option<f64> + Copy,
    ) -> Option<usize> {
        candidates
            .iter()
            .filter_map(|&c| self.mean_over_datasets(c, f).map(|v| (c, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c)
    }
}
