//! The published paper's study figures, drawn when a manifest sweeps what they show: the
//! generation-length scaling (throughput, L̄, ℓ̄ and acceptance against T), the prompt-length
//! sensitivity (throughput and speedup against the prompt cap) and DynaTree's parameter
//! sensitivity (throughput against each DynaTree parameter the manifest varies).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::figures::{color, draw_legend, err, text_style, DrawResult};
use super::rows::{RunRow, Study};
use crate::decode::{ParamKind, METHODS};

/// A run's value on a panel's y axis.
type Value = fn(&RunRow) -> Option<f64>;

/// One line (or set of points) of a panel.
struct Series {
    label: String,
    color: usize,
    points: Vec<(f64, f64)>,
    /// Points only: configurations scattered at their values, plus a line through the means.
    scatter: bool,
}

/// A dashed horizontal line: its label, level, colour and dash length.
struct Reference {
    label: String,
    y: f64,
    color: usize,
    dash: u32,
}

/// What a panel plots against its x axis.
struct Panel<'a> {
    title: String,
    x_desc: &'a str,
    y_desc: &'a str,
    series: Vec<Series>,
    /// Horizontal reference lines (AR, the best fixed tree).
    references: Vec<Reference>,
}

fn values_of(rows: &[&RunRow], f: impl Fn(&RunRow) -> f64) -> Vec<f64> {
    super::rows::distinct_sorted(rows.iter().map(|r| f(r)))
}

/// Generation lengths swept at the main prompt cap.
pub fn lengths(study: &Study) -> Vec<f64> {
    let rows: Vec<&RunRow> = study
        .all_rows
        .iter()
        .filter(|r| study.at_main_cap(r))
        .collect();
    values_of(&rows, |r| r.max_new_tokens as f64)
}

/// The datasets that ran with more than one prompt cap (at the main generation length).
pub fn prompt_datasets(study: &Study) -> Vec<(String, String)> {
    let caps = |key: &str| {
        let rows: Vec<&RunRow> = study
            .all_rows
            .iter()
            .filter(|r| r.dataset_key == key && r.max_new_tokens == study.length)
            .collect();
        values_of(&rows, |r| r.prompt_max_chars as f64).len()
    };
    study
        .datasets
        .iter()
        .filter(|(key, _)| caps(key) >= 2)
        .cloned()
        .collect()
}

/// Each shown configuration's metric against `x` on dataset `key`, over `rows`.
fn config_lines(
    study: &Study,
    key: &str,
    rows: &[&RunRow],
    x: fn(&RunRow) -> f64,
    y: Value,
) -> Vec<Series> {
    study
        .shown
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let config = &study.configs[c];
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.dataset_key == key && config.covers(&r.method, key))
                .filter_map(|r| Some((x(r), y(r)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: config.label.clone(),
                color: i,
                points,
                scatter: false,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// A grid of panels, a row per dataset and a column per metric, each with one line per shown
/// configuration against `x`.
struct Grid<'a> {
    title: &'a str,
    /// (key, label) of the datasets drawn, one row each.
    datasets: Vec<(String, String)>,
    rows: Vec<&'a RunRow>,
    x: fn(&RunRow) -> f64,
    x_desc: &'a str,
    metrics: &'a [(&'a str, Value)],
}

fn draw_grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
    grid: &Grid,
) -> DrawResult {
    let n = grid.metrics.len();
    let cells = titled(area, grid.title)?.split_evenly((grid.datasets.len().max(1), n));
    for (d, (key, name)) in grid.datasets.iter().enumerate() {
        for (m, (desc, f)) in grid.metrics.iter().enumerate() {
            let panel = Panel {
                title: format!("{name}: {desc}"),
                x_desc: grid.x_desc,
                y_desc: desc,
                series: config_lines(study, key, &grid.rows, grid.x, *f),
                references: Vec::new(),
            };
            draw_panel(&cells[d * n + m], &panel, m == 0)?;
        }
    }
    Ok(())
}

/// Four panels per dataset: throughput, L̄, ℓ̄ and acceptance against the generation length.
pub fn draw_lengths<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
) -> DrawResult {
    let metrics: [(&str, Value); 4] = [
        ("Throughput (tokens/s)", |r| Some(r.throughput)),
        ("Tokens per round", |r| r.tokens_per_pass),
        ("Accepted path length", |r| r.mean_accepted_length),
        ("Acceptance, paper (%)", |r| {
            r.paper_acceptance.map(|a| a * 100.0)
        }),
    ];
    let grid = Grid {
        title: "Generation-length scaling",
        datasets: study.datasets.clone(),
        rows: study
            .all_rows
            .iter()
            .filter(|r| study.at_main_cap(r))
            .collect(),
        x: |r| r.max_new_tokens as f64,
        x_desc: "New tokens T",
        metrics: &metrics,
    };
    draw_grid(area, study, &grid)
}

/// Throughput and speedup against the prompt cap, per dataset.
pub fn draw_prompt_length<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
) -> DrawResult {
    let metrics: [(&str, Value); 2] = [
        ("Throughput (tokens/s)", |r| Some(r.throughput)),
        ("Speedup over AR (×)", |r| Some(r.speedup)),
    ];
    let grid = Grid {
        title: "Prompt-length sensitivity",
        datasets: prompt_datasets(study),
        rows: study
            .all_rows
            .iter()
            .filter(|r| r.max_new_tokens == study.length)
            .collect(),
        x: |r| r.prompt_max_chars as f64,
        x_desc: "Prompt cap (characters)",
        metrics: &metrics,
    };
    draw_grid(area, study, &grid)
}

/// DynaTree's numeric parameters that take more than one value among the study's runs.
pub fn sensitivity_params(study: &Study) -> Vec<&'static str> {
    let Some(spec) = METHODS.iter().find(|m| m.name == "dynatree") else {
        return Vec::new();
    };
    spec.params
        .iter()
        .filter(|p| p.kind != ParamKind::Switch)
        // Varied within a dataset: a parameter set per dataset alone is not a sensitivity.
        .filter(|p| {
            study.datasets.iter().any(|(key, _)| {
                let values: Vec<f64> = dynatree_rows(study)
                    .filter(|r| &r.dataset_key == key)
                    .filter_map(|r| param_value(r, p.name))
                    .collect();
                values.iter().any(|v| *v != values[0])
            })
        })
        .map(|p| p.name)
        .collect()
}

fn dynatree_rows(study: &Study) -> impl Iterator<Item = &RunRow> {
    study.rows.iter().filter(|r| r.method.name() == "dynatree")
}

fn param_value(r: &RunRow, name: &str) -> Option<f64> {
    match r.method.value(name)? {
        crate::decode::Param::Count(n) => Some(n as f64),
        crate::decode::Param::Probability(p) => Some(p),
        _ => None,
    }
}

/// One panel per varied parameter: every DynaTree run at its value (dots), the mean per value
/// (line), per dataset; AR and the best Fixed Tree as dashed references.
pub fn draw_sensitivity<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
) -> DrawResult {
    let params = sensitivity_params(study);
    let grid = titled(area, "DynaTree parameter sensitivity")?;
    let cells = grid.split_evenly((1, params.len().max(1)));
    for (cell, name) in cells.iter().zip(&params) {
        let mut series = Vec::new();
        let mut references = Vec::new();
        for (d, (key, dataset)) in study.datasets.iter().enumerate() {
            let points: Vec<(f64, f64)> = dynatree_rows(study)
                .filter(|r| &r.dataset_key == key)
                .filter_map(|r| Some((param_value(r, name)?, r.throughput)))
                .collect();
            series.push(Series {
                label: dataset.clone(),
                color: d,
                points,
                scatter: true,
            });
            let best = |method: &str| {
                study
                    .rows
                    .iter()
                    .filter(|r| &r.dataset_key == key && r.method.name() == method)
                    .map(|r| r.throughput)
                    .reduce(f64::max)
            };
            let lines = [
                ("AR", best("ar"), 4),
                ("best Fixed Tree", best("fixed_tree"), 14),
            ];
            for (what, y, dash) in lines {
                if let Some(y) = y {
                    references.push(Reference {
                        label: format!("{what}, {dataset}"),
                        y,
                        color: d,
                        dash,
                    });
                }
            }
        }
        let panel = Panel {
            title: name.to_string(),
            x_desc: name,
            y_desc: "Throughput (tokens/s)",
            series,
            references,
        };
        draw_panel(cell, &panel, true)?;
    }
    Ok(())
}

fn titled<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, String> {
    area.margin(16, 0, 0, 0)
        .titled(title, text_style(40))
        .map_err(err)
}

/// Means of `points` per distinct x, ascending.
fn means(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    super::rows::distinct_sorted(points.iter().map(|p| p.0))
        .into_iter()
        .map(|x| {
            let ys: Vec<f64> = points.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
            (x, ys.iter().sum::<f64>() / ys.len() as f64)
        })
        .collect()
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    legend: bool,
) -> DrawResult {
    let xs: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(panel.references.iter().map(|r| r.y));
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if !x0.is_finite() {
        return Ok(());
    }
    let pad = ((x1 - x0) * 0.06).max(x0.abs() * 0.05).max(1e-3);
    // Headroom above the lines for the legend, which takes about 6% of the height per entry.
    let entries = panel.series.len() + panel.references.len();
    let legend_share = if legend {
        (0.05 + 0.065 * entries as f64).min(0.65)
    } else {
        0.1
    };
    let y_max = ys.fold(0.0, f64::max).max(1e-9) / (1.0 - legend_share);
    let whole_xs = xs.iter().all(|x| x.fract() == 0.0);
    let x_format = move |x: &f64| {
        if whole_xs {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    let y_format = move |y: &f64| {
        if y_max >= 20.0 {
            format!("{y:.0}")
        } else {
            format!("{y:.1}")
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, text_style(28))
        .margin(16)
        .x_label_area_size(70)
        .y_label_area_size(100)
        .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .label_style(text_style(22))
        .axis_desc_style(text_style(24))
        .draw()
        .map_err(err)?;
    for s in &panel.series {
        let style = color(s.color).stroke_width(3);
        let line = if s.scatter {
            means(&s.points)
        } else {
            s.points.clone()
        };
        let drawn = chart
            .draw_series(LineSeries::new(line, style))
            .map_err(err)?;
        if legend {
            drawn
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 6, color(s.color).filled())),
            )
            .map_err(err)?;
    }
    for r in &panel.references {
        let style = color(r.color).stroke_width(2);
        let drawn = chart
            .draw_series(DashedLineSeries::new(
                vec![(x0 - pad, r.y), (x1 + pad, r.y)],
                r.dash,
                6,
                style,
            ))
            .map_err(err)?;
        if legend {
            let dash = r.dash as i32;
            drawn.label(r.label.clone()).legend(move |(x, y)| {
                // The line's own dash pattern over the legend's 20 pixels: two dashes at most.
                let second = (dash + 6).min(20);
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (dash.min(20), 0)], style)
                    + PathElement::new(vec![(second, 0), ((second + dash).min(20), 0)], style)
            });
        }
    }
    if legend {
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 20)?;
    }
    Ok(())
}
