//! `numbers.tex`: one `\newcommand` per headline number, so that prose cites generated numbers
//! (`\dtSpeedupDynaTreeDSixBTwoPGNineteen`) and never goes stale.
//!
//! Names are `\dt` + what + configuration label + dataset label, reduced to letters (LaTeX
//! command names allow nothing else): digits are spelled out, `.` becomes `Pt`, τ becomes `Tau`,
//! everything else is dropped. Two numbers that would get one name are an error.

use std::collections::BTreeMap;

use super::latex::{escape, number, Header};
use super::rows::Study;
use super::tables::{
    DRAFT_ACCEPTANCE, MEMORY, PAPER_ACCEPTANCE, SPEEDUP, THROUGHPUT, TOKENS_PER_PASS,
};
use super::ReportError;

const DIGITS: [&str; 10] = [
    "Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine",
];

/// A label as letters only: `DynaTree (D=6, B=2)` → `DynaTreeDSixBTwo`.
pub fn command_part(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        match c {
            c if c.is_ascii_alphabetic() => out.push(c),
            c if c.is_ascii_digit() => out.push_str(DIGITS[c as usize - '0' as usize]),
            '.' => out.push_str("Pt"),
            'τ' => out.push_str("Tau"),
            'ρ' => out.push_str("Rho"),
            'η' => out.push_str("Eta"),
            _ => {}
        }
    }
    out
}

struct Numbers {
    defined: BTreeMap<String, String>,
    lines: Vec<String>,
}

impl Numbers {
    fn define(&mut self, name: String, value: String, meaning: String) -> Result<(), ReportError> {
        if let Some(previous) = self.defined.insert(name.clone(), meaning.clone()) {
            return Err(ReportError::Output {
                path: "numbers.tex".into(),
                message: format!("\\{name} would name both {previous:?} and {meaning:?}"),
            });
        }
        // A line break in a label would end the comment and leave the rest live.
        self.lines
            .push(format!("% {}", meaning.replace(['\n', '\r'], " ")));
        self.lines
            .push(format!("\\newcommand{{\\{name}}}{{{value}}}"));
        Ok(())
    }
}

/// The text of `numbers.tex`.
pub fn render(study: &Study, header: &Header) -> Result<String, ReportError> {
    let mut numbers = Numbers {
        defined: BTreeMap::new(),
        lines: Vec::new(),
    };
    per_run_numbers(study, &mut numbers)?;
    per_config_numbers(study, &mut numbers)?;
    best_numbers(study, &mut numbers)?;
    numbers.define(
        "dtNumRuns".into(),
        study.all_rows.len().to_string(),
        "number of runs in the report".into(),
    )?;
    numbers.define(
        "dtMaxNewTokens".into(),
        study.length.to_string(),
        "new tokens generated per prompt in the main tables".into(),
    )?;
    if !header.devices.is_empty() {
        numbers.define(
            "dtDevice".into(),
            escape(&header.devices.join("; ")),
            "device the runs used".into(),
        )?;
    }
    Ok(format!(
        "{}{}\n",
        header.lines("% "),
        numbers.lines.join("\n")
    ))
}

/// Throughput, speedup, acceptance and tokens per iteration of every configuration per dataset.
fn per_run_numbers(study: &Study, numbers: &mut Numbers) -> Result<(), ReportError> {
    let metrics = [
        ("Throughput", &THROUGHPUT),
        ("Speedup", &SPEEDUP),
        ("Acceptance", &DRAFT_ACCEPTANCE),
        ("PaperAcceptance", &PAPER_ACCEPTANCE),
        ("TokensPerIter", &TOKENS_PER_PASS),
    ];
    for (c, config) in study.configs.iter().enumerate() {
        for (d, (_, dataset)) in study.datasets.iter().enumerate() {
            let Some(run) = study.cell(c, d) else {
                continue;
            };
            for (what, metric) in metrics {
                let Some(value) = (metric.value)(run) else {
                    continue;
                };
                numbers.define(
                    format!(
                        "dt{what}{}{}",
                        command_part(&config.label),
                        command_part(dataset)
                    ),
                    number(Some(value), metric.decimals),
                    format!("{} of {} on {dataset}", metric.title, config.label),
                )?;
            }
        }
    }
    Ok(())
}

/// Peak memory averaged over datasets and its change relative to AR, per configuration that
/// has a peak on every dataset (an average over a subset would not be the table's).
fn per_config_numbers(study: &Study, numbers: &mut Numbers) -> Result<(), ReportError> {
    let ar = study.ar_mean(MEMORY.value);
    for (c, config) in study.configs.iter().enumerate() {
        let on_every_dataset =
            (0..study.datasets.len()).all(|d| study.cell(c, d).and_then(MEMORY.value).is_some());
        let Some(memory) = study
            .mean_over_datasets(c, MEMORY.value)
            .filter(|_| on_every_dataset)
        else {
            continue;
        };
        let name = command_part(&config.label);
        numbers.define(
            format!("dtMemory{name}"),
            number(Some(memory), MEMORY.decimals),
            format!(
                "peak memory (MB, {}) of {}, mean over datasets",
                study.cell(c, 0).map_or("", |r| r.memory.kind.as_str()),
                config.label
            ),
        )?;
        if let (Some(ar), true) = (ar, config.method.name() != "ar") {
            numbers.define(
                format!("dtMemoryOverhead{name}"),
                number(Some((memory / ar - 1.0) * 100.0), 2),
                format!("peak memory change (%) of {} vs AR", config.label),
            )?;
        }
    }
    Ok(())
}

/// The best speculative configuration per dataset: its label and speedup.
fn best_numbers(study: &Study, numbers: &mut Numbers) -> Result<(), ReportError> {
    for (d, (_, dataset)) in study.datasets.iter().enumerate() {
        let best = (0..study.configs.len())
            .filter(|&c| study.configs[c].method.name() != "ar")
            .filter_map(|c| study.cell(c, d).map(|r| (c, r.speedup)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((c, speedup)) = best else { continue };
        let part = command_part(dataset);
        numbers.define(
            format!("dtBestMethod{part}"),
            escape(&study.configs[c].label),
            format!("fastest speculative configuration on {dataset}"),
        )?;
        numbers.define(
            format!("dtBestSpeedup{part}"),
            number(Some(speedup), SPEEDUP.decimals),
            format!("its speedup over AR on {dataset}"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_are_letters_only() {
        assert_eq!(command_part("DynaTree (D=6, B=2)"), "DynaTreeDSixBTwo");
        assert_eq!(
            command_part("DynaTree (D=6, B=2, τ=0.03)"),
            "DynaTreeDSixBTwoTauZeroPtZeroThree"
        );
        assert_eq!(command_part("WikiText-2"), "WikiTextTwo");
        assert_eq!(command_part("PG-19"), "PGOneNine");
    }
}
