//! The published paper's own tables beyond the shared ones: verification efficiency
//! (`efficiency.tex`: acceptance, L̄, ℓ̄, rounds) and the progressive ablation (`ablation.tex`:
//! a fixed tree against DynaTree with its components switched on one by one).

use super::latex::{cell, dataset_heading, escape, number, row, tabular, Header};
use super::rows::Study;
use super::tables::{by_dataset, Metric, SPEEDUP};
use crate::decode::Method;
use crate::decode::{AdaptiveParams, Param};

pub const ACCEPTANCE: Metric = Metric {
    title: r"Accept.\ (\%)",
    value: |r| r.paper_acceptance.map(|a| a * 100.0),
    spread: None,
    decimals: 1,
    unit: "",
    better: super::latex::Better::Higher,
};
pub const TOKENS_PER_ROUND: Metric = Metric {
    title: r"$\bar{L}$",
    value: |r| r.tokens_per_pass,
    spread: None,
    decimals: 2,
    unit: "",
    better: super::latex::Better::Higher,
};
pub const PATH_LENGTH: Metric = Metric {
    title: r"$\bar{\ell}$",
    value: |r| r.mean_accepted_length,
    spread: None,
    decimals: 2,
    unit: "",
    better: super::latex::Better::Higher,
};
pub const ROUNDS: Metric = Metric {
    title: r"\#Iter.",
    value: |r| r.passes_per_generation,
    spread: None,
    decimals: 0,
    unit: "",
    better: super::latex::Better::Lower,
};

/// Acceptance (the authors' convention), tokens per round, committed path length and rounds.
pub fn efficiency(study: &Study, header: &Header) -> String {
    by_dataset(
        study,
        header,
        &[&ACCEPTANCE, &TOKENS_PER_ROUND, &PATH_LENGTH, &ROUNDS],
    )
}

pub const EFFICIENCY_CAPTION: &str = r"Verification efficiency: acceptance as the authors' scripts compute it (committed tokens including the target's own $\div$ (rounds $\times$ K, D+2 or D$_0$+2), so trees can exceed 100\%; --- where they report none), tokens committed per verification round ($\bar{L}$), accepted path length before the target's own token ($\bar{\ell}$) and verification rounds per generation (\#Iter.; one per token for AR). Means over every generation.";

/// The ablation's configurations: every Fixed Tree, then every DynaTree, fewest components
/// first.
fn ablation_configs(study: &Study) -> Vec<usize> {
    let of = |name: &str| -> Vec<usize> {
        (0..study.configs.len())
            .filter(|&c| study.configs[c].method.name() == name)
            .collect()
    };
    let mut dynatree = of("dynatree");
    dynatree.sort_by_key(|&c| components(&study.configs[c].method));
    [of("fixed_tree"), dynatree].concat()
}

fn components(method: &Method) -> usize {
    match method {
        Method::Dynatree(p) => {
            usize::from(p.dynamic_breadth)
                + usize::from(p.dynamic_depth)
                + usize::from(p.window > 0)
        }
        _ => 0,
    }
}

/// The paper's name for a DynaTree variant by the components it has on.
fn variant_name(p: &AdaptiveParams) -> Option<&'static str> {
    match (p.dynamic_breadth, p.dynamic_depth, p.window > 0) {
        (true, false, false) => Some("+ Dynamic Breadth"),
        (true, true, false) => Some(r"+ Dynamic Breadth \& Depth"),
        (true, true, true) => Some("+ History Adaptation"),
        _ => None,
    }
}

/// Row names: the variant's component name where it tells the rows apart, else its label.
fn ablation_names(study: &Study, configs: &[usize]) -> Vec<String> {
    let named: Vec<Option<&str>> = configs
        .iter()
        .map(|&c| match &study.configs[c].method {
            Method::Dynatree(p) => variant_name(p),
            _ => None,
        })
        .collect();
    configs
        .iter()
        .zip(&named)
        .map(|(&c, name)| {
            let unique = name.is_some_and(|n| named.iter().filter(|m| **m == Some(n)).count() == 1);
            match name {
                Some(n) if unique => n.to_string(),
                _ => escape(&study.configs[c].label),
            }
        })
        .collect()
}

/// Fixed Tree against DynaTree's variants per dataset: throughput, speedup and the change of
/// throughput against the first Fixed Tree. `None` without both methods.
pub fn ablation(study: &Study, header: &Header) -> Option<String> {
    let configs = ablation_configs(study);
    let reference = *configs.first()?;
    let has = |name: &str| {
        configs
            .iter()
            .any(|&c| study.configs[c].method.name() == name)
    };
    if !(has("fixed_tree") && has("dynatree")) {
        return None;
    }
    let names = ablation_names(study, &configs);
    let mut body = Vec::new();
    for (d, (_, dataset)) in study.datasets.iter().enumerate() {
        if d > 0 {
            body.push(r"\midrule".to_string());
        }
        body.push(dataset_heading(4, dataset));
        let base = study.cell(reference, d).map(|r| r.throughput);
        for (&c, name) in configs.iter().zip(&names) {
            let Some(run) = study.cell(c, d) else {
                continue;
            };
            let change = base.map(|b| (run.throughput / b - 1.0) * 100.0);
            body.push(row(&[
                name.clone(),
                format!(
                    r"{} $\pm$ {}",
                    number(Some(run.throughput), 1),
                    number(Some(run.throughput_std), 1)
                ),
                cell(Some(run.speedup), SPEEDUP.decimals, SPEEDUP.unit, false),
                signed_percent(change),
            ]));
        }
    }
    let head = row(&[
        "Variant".into(),
        "Throughput (t/s)".into(),
        "Speedup".into(),
        r"$\Delta$ vs Fixed".into(),
    ]);
    Some(tabular(header, "lrrr", &[head], &body))
}

fn signed_percent(value: Option<f64>) -> String {
    match value.filter(|v| v.is_finite()) {
        Some(v) if number(Some(v), 1) == "0.0" || number(Some(v), 1) == "-0.0" => r"0.0\%".into(),
        Some(v) => format!(r"{v:+.1}\%"),
        None => "---".into(),
    }
}

/// The ablation caption, naming the reference and what each component switch does.
pub fn ablation_caption(study: &Study) -> String {
    let reference = ablation_configs(study)
        .first()
        .map(|&c| study.configs[c].label.clone())
        .unwrap_or_default();
    let window = crate::decode::method_spec("dynatree")
        .and_then(|s| s.param("window"))
        .map(|p| p.default);
    let window = match window {
        Some(Param::Count(w)) => w.to_string(),
        _ => "W".into(),
    };
    format!(
        r"Progressive ablation: {} against DynaTree with Dynamic Breadth (per-node branching from the draft's confidence; depth fixed at D$_0$), + Dynamic Depth (expansion gated by path probability up to D$_{{max}}$) and + History Adaptation (D$_0$, $\tau_h$ and $\rho_{{deep}}$ moved every round from the last W rounds' acceptance; W = {window} by default, 0 turns it off). Throughput mean $\pm$ std over prompts; $\Delta$: change of throughput against the fixed tree on the same dataset.",
        escape(&reference)
    )
}
