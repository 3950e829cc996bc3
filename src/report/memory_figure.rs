//! The memory figure: per method and dataset, the peak stacked from what it is made of
//! (weights, target cache, draft cache, the rest), and beside it the change against AR, whose
//! fraction of a percent would be invisible on bars that start at zero.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figures::{color, draw_category_labels, err, label_width, text_style, DrawResult};
use super::rows::{RunRow, Study};

/// One bar: a configuration on a dataset, and AR's peak on that dataset.
struct Bar<'a> {
    label: String,
    run: &'a RunRow,
    ar_peak: Option<f64>,
}

fn bars(study: &Study) -> Vec<Bar<'_>> {
    let ar = study.configs.iter().position(|c| c.method.name() == "ar");
    let mut out = Vec::new();
    for &c in &study.shown {
        for (d, (_, dataset)) in study.datasets.iter().enumerate() {
            if let Some(run) = study.cell(c, d) {
                out.push(Bar {
                    label: format!("{} · {dataset}", study.configs[c].label),
                    run,
                    ar_peak: ar
                        .and_then(|a| study.cell(a, d))
                        .and_then(|r| r.memory.peak_mb),
                });
            }
        }
    }
    out
}

const PART_NAMES: [&str; 4] = [
    "weights (target + draft)",
    "KV cache, target",
    "KV cache, draft",
    "rest",
];

/// The stacked segments of a bar in MB, in drawing order (that of [`PART_NAMES`]).
fn segments(run: &RunRow) -> [f64; 4] {
    let m = &run.memory;
    [
        m.weights_target_mb + m.weights_draft_mb,
        m.kv_target_mb,
        m.kv_draft_mb,
        m.rest_mb.unwrap_or(0.0).max(0.0),
    ]
}

pub(super) fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, study: &Study) -> DrawResult {
    let kind = study
        .rows
        .first()
        .map_or(String::new(), |r| r.memory.kind.replace('_', " "));
    let area = area
        .margin(16, 0, 0, 0)
        .titled(
            &format!("Peak memory ({kind}) and its parts"),
            text_style(44),
        )
        .map_err(err)?;
    let bars = bars(study);
    let (legend, area) = area.split_vertically(56);
    draw_parts_legend(&legend)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 * 62 / 100);
    stacked(&left, &bars)?;
    change(&right, &bars)
}

/// The parts' colours in one row above the panels, where no bar can hide under them.
fn draw_parts_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> DrawResult {
    let names = PART_NAMES;
    let style = text_style(28).pos(Pos::new(HPos::Left, VPos::Center));
    let width = area.dim_in_pixel().0 as i32;
    let slot = width / (names.len() as i32 + 1);
    for (part, name) in names.iter().enumerate() {
        let x = slot / 2 + slot * part as i32;
        area.draw(&Rectangle::new(
            [(x, 16), (x + 28, 44)],
            color(part).filled(),
        ))
        .map_err(err)?;
        area.draw(&Text::new(name.to_string(), (x + 38, 30), style.clone()))
            .map_err(err)?;
    }
    Ok(())
}

fn category_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x: std::ops::Range<f64>,
    rows: usize,
    label_area: u32,
    x_desc: &str,
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    String,
> {
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(90)
        .y_label_area_size(label_area)
        .build_cartesian_2d(x, -0.5..rows as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(6)
        .y_labels(rows.max(1))
        .y_label_formatter(&|_| String::new())
        .x_desc(x_desc)
        .label_style(text_style(28))
        .axis_desc_style(text_style(32))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Bars from zero, one stacked segment per part.
fn stacked<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, bars: &[Bar]) -> DrawResult {
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let rows = bars.len();
    let x_max = bars
        .iter()
        .map(|b| b.run.memory.peak_mb.unwrap_or(0.0))
        .fold(0.0, f64::max)
        * 1.05;
    let mut chart = category_chart(
        area,
        0.0..x_max.max(1e-9),
        rows,
        label_width(&labels, 30),
        "Peak memory (MB)",
    )?;
    let y_of = |i: usize| (rows - 1 - i) as f64;
    for part in 0..4 {
        let rects: Vec<_> = bars
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let parts = segments(b.run);
                let start: f64 = parts[..part].iter().sum();
                let y = y_of(i);
                Rectangle::new(
                    [(start, y - 0.38), (start + parts[part], y + 0.38)],
                    color(part).filled(),
                )
            })
            .collect();
        chart.draw_series(rects).map_err(err)?;
    }
    draw_category_labels(&chart, area, &labels)
}

/// The peak minus AR's on the same dataset, MB on the axis and % beside each bar.
fn change<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, bars: &[Bar]) -> DrawResult {
    let rows = bars.len();
    let deltas: Vec<Option<(f64, f64)>> = bars
        .iter()
        .map(|b| {
            let peak = b.run.memory.peak_mb?;
            let ar = b.ar_peak?;
            Some((peak - ar, (peak / ar - 1.0) * 100.0))
        })
        .collect();
    let reach = deltas
        .iter()
        .flatten()
        .map(|(mb, _)| mb.abs())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.6;
    let mut chart = category_chart(area, -reach..reach, rows, 30, "Change vs AR (MB)")?;
    let y_of = |i: usize| (rows - 1 - i) as f64;
    chart
        .draw_series(deltas.iter().enumerate().filter_map(|(i, d)| {
            let (mb, _) = (*d)?;
            let y = y_of(i);
            Some(Rectangle::new(
                [(0.0, y - 0.38), (mb, y + 0.38)],
                color(5).filled(),
            ))
        }))
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.5), (0.0, rows as f64 - 0.5)],
            BLACK.stroke_width(2),
        )))
        .map_err(err)?;
    let style = |right: bool| {
        let h = if right { HPos::Left } else { HPos::Right };
        text_style(24).pos(Pos::new(h, VPos::Center))
    };
    chart
        .draw_series(deltas.iter().enumerate().filter_map(|(i, d)| {
            let (mb, pct) = (*d)?;
            let sign = |v: f64| if v >= 0.0 { "+" } else { "−" };
            let text = format!(
                "{}{:.2} MB ({}{:.2}%)",
                sign(mb),
                mb.abs(),
                sign(pct),
                pct.abs()
            );
            // Labels sit on the side away from the bar.
            let right = mb <= 0.0;
            let x = if right { reach * 0.04 } else { -reach * 0.04 };
            Some(Text::new(text, (x, y_of(i)), style(right)))
        }))
        .map_err(err)?;
    Ok(())
}
