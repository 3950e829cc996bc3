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
    /// The prompt cap (`prompts.max_chars`).
    pub prompt_max_chars: u64,
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
    /// Target passes (verification rounds; one per token for AR) per generation.
    pub passes_per_generation: Option<f64>,
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
            prompt_max_chars: f("prompt_max_chars")?.unwrap_or_default() as u64,
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
            passes_per_generation: f("target_passes_per_generation")?,
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

/// One method configuration as a table row: a method with all its parameters, or, where the
/// manifest sets parameters per dataset (`[sweep.METHOD.dataset.NAME]`), the methods that stand
/// in the same place of each dataset's grid.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration on the first dataset that has it.
    pub method: Method,
    /// (dataset key, method) where it differs by dataset; empty otherwise.
    pub per_dataset: Vec<(String, Method)>,
    pub label: String,
    /// The method the study proposes (DynaTree): set in bold where the paper does.
    pub proposed: bool,
}

impl Config {
    /// Whether the run of `method` on `dataset` belongs to this configuration.
    pub fn covers(&self, method: &Method, dataset: &str) -> bool {
        match self.per_dataset.iter().find(|(d, _)| d == dataset) {
            Some((_, m)) => m == method,
            None => self.per_dataset.is_empty() && &self.method == method,
        }
    }

    /// `K=8 on WikiText-2, K=5 on PG-19`: the parameters that differ by dataset, for captions.
    pub fn per_dataset_note(&self, datasets: &[(String, String)]) -> Option<String> {
        let hidden = self.differing();
        if hidden.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .per_dataset
            .iter()
            .map(|(key, method)| {
                let values: Vec<String> = hidden
                    .iter()
                    .filter_map(|name| {
                        let spec = method.spec().param(name)?;
                        let value = method.value(name)?;
                        Some(format!("{}={value}", spec.symbol.unwrap_or(name)))
                    })
                    .collect();
                let label = datasets
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(key.as_str(), |(_, l)| l.as_str());
                format!("{} on {label}", values.join(", "))
            })
            .collect();
        Some(format!("{}: {}", self.label, parts.join("; ")))
    }

    /// Parameters whose values differ between the datasets.
    pub fn differing(&self) -> Vec<&'static str> {
        self.method
            .spec()
            .params
            .iter()
            .map(|p| p.name)
            .filter(|name| {
                let first = self.method.value(name);
                self.per_dataset.iter().any(|(_, m)| m.value(name) != first)
            })
            .collect()
    }
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
    /// Each dataset's first prompt cap: the one the main tables show.
    pub main_caps: Vec<(String, u64)>,
    pub configs: Vec<Config>,
    /// The configurations the main tables show: all of a method's when it has few, else its
    /// best by mean speedup over the datasets (so a 40-point sweep does not flood the tables).
    pub shown: Vec<usize>,
}

fn at_cap(caps: &[(String, u64)], r: &RunRow) -> bool {
    caps.iter()
        .find(|(d, _)| d == &r.dataset_key)
        .is_none_or(|(_, c)| *c == r.prompt_max_chars)
}

/// The configurations of `rows` in grid order. A method with per-dataset parameters whose
/// datasets have equally many runs pairs them by position: its i-th run on each dataset forms
/// one configuration.
fn configs_of(manifest: &Manifest, rows: &[RunRow]) -> Vec<Config> {
    let mut groups: Vec<Vec<(String, Method)>> = Vec::new();
    for axes in manifest.sweep.method.iter().filter(|m| !m.axes.is_empty()) {
        let on = |key: &String| -> Vec<&RunRow> {
            rows.iter()
                .filter(|r| &r.dataset_key == key && r.method.name() == axes.method)
                .collect()
        };
        let per_dataset: Vec<Vec<&RunRow>> = manifest.sweep.dataset.iter().map(on).collect();
        let counts: Vec<usize> = per_dataset.iter().map(Vec::len).collect();
        let paired = !axes.per_dataset.is_empty() && counts.windows(2).all(|w| w[0] == w[1]);
        if paired {
            for i in 0..counts[0] {
                groups.push(
                    per_dataset
                        .iter()
                        .map(|runs| (runs[i].dataset_key.clone(), runs[i].method.clone()))
                        .collect(),
                );
            }
        }
    }
    let mut configs: Vec<Config> = Vec::new();
    for row in rows {
        if configs
            .iter()
            .any(|c| c.covers(&row.method, &row.dataset_key))
        {
            continue;
        }
        let per_dataset = groups
            .iter()
            .find(|g| {
                g.iter()
                    .any(|(d, m)| d == &row.dataset_key && m == &row.method)
            })
            .cloned()
            .unwrap_or_default();
        configs.push(Config {
            proposed: row.method.name() == "dynatree",
            method: row.method.clone(),
            per_dataset,
            label: String::new(),
        });
    }
    let hidden: Vec<Vec<&'static str>> = configs.iter().map(Config::differing).collect();
    let names: Vec<Option<&str>> = configs
        .iter()
        .map(|c| {
            manifest
                .sweep
                .method
                .iter()
                .find(|m| m.method == c.method.name())
                .and_then(|m| m.label.as_deref())
        })
        .collect();
    let items: Vec<labels::Labelled> = configs
        .iter()
        .zip(&hidden)
        .zip(&names)
        .map(|((c, hidden), name)| labels::Labelled {
            method: &c.method,
            name: *name,
            hidden,
        })
        .collect();
    let labels = labels::label_each(&items);
    for (config, label) in configs.iter_mut().zip(labels) {
        config.label = label;
    }
    configs
}

/// A method with more configurations than this is represented by its best one.
const MAX_SHOWN_PER_METHOD: usize = 4;

impl Study {
    pub fn new(manifest: &Manifest, all_rows: Vec<RunRow>) -> Self {
        let length = manifest.generation.max_new_tokens[0] as u64;
        // The main tables show each dataset's first prompt cap; the prompt-length figure all.
        let main_caps: Vec<(String, u64)> = manifest
            .sweep
            .dataset
            .iter()
            .filter_map(|d| Some((d.clone(), *manifest.prompts.max_chars_on(d).first()? as u64)))
            .collect();
        let rows: Vec<RunRow> = all_rows
            .iter()
            .filter(|r| r.max_new_tokens == length && at_cap(&main_caps, r))
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
        let configs = configs_of(manifest, &rows);
        let mut study = Self {
            experiment: manifest.experiment.name.clone(),
            datasets,
            stand_ins,
            length,
            rows,
            all_rows,
            main_caps,
            configs,
            shown: Vec::new(),
        };
        study.shown = study.select_shown();
        study
    }

    /// The run of configuration `c` on dataset `d` (indices into `configs` and `datasets`).
    pub fn cell(&self, c: usize, d: usize) -> Option<&RunRow> {
        let (key, _) = &self.datasets[d];
        let config = &self.configs[c];
        self.rows
            .iter()
            .find(|r| &r.dataset_key == key && config.covers(&r.method, key))
    }

    /// Whether `r` ran with its dataset's main prompt cap.
    pub fn at_main_cap(&self, r: &RunRow) -> bool {
        at_cap(&self.main_caps, r)
    }

    /// The captions' notes on configurations whose parameters differ by dataset.
    pub fn per_dataset_notes(&self) -> Vec<String> {
        self.shown
            .iter()
            .filter_map(|&c| self.configs[c].per_dataset_note(&self.datasets))
            .collect()
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
        for name in crate::decode::METHODS.map(|m| m.name) {
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

/// The distinct values, ascending: the x positions of a figure's points.
pub(super) fn distinct_sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut xs: Vec<f64> = values.into_iter().collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}
