//! The appendix's figures, drawn with plotters as PNG (for pdflatex) and SVG: main results,
//! the cross-dataset comparison, peak memory, the Fixed Tree sweep (when the sweep varies depth
//! or τ) and the study figures of `study_figures` (length scaling, prompt length, DynaTree
//! sensitivity) when the manifest sweeps what they show. Text uses DejaVu Sans compiled into the binary, so a fresh machine needs no fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::latex::Header;
use super::rows::RunRow;
use super::rows::Study;
use super::tables::{Metric, SPEEDUP, THROUGHPUT};
use super::{study_figures, ReportError, Written};

/// One figure, for the appendix: file stem (`.png`/`.svg` beside) and caption.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: &'static str,
    pub caption: String,
    /// Drawn for the full text width; otherwise for one column (fonts sized for ~3.3 in).
    pub wide: bool,
}

const FONT: &str = "sans-serif";
/// Width of a one-column figure: 30 px text is then ~7.5 pt at 3.3 in. Wider figures are drawn
/// for the text width (~7 in), where 28 px text at 2000 px is ~7 pt.
const COLUMN_PIXELS: u32 = 950;
/// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        let regular = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        let bold = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
        // Both are valid TrueType files checked in with the source; failure is a build defect.
        let registered = plotters::style::register_font(FONT, FontStyle::Normal, regular)
            .and_then(|()| plotters::style::register_font(FONT, FontStyle::Bold, bold));
        assert!(registered.is_ok(), "the embedded DejaVu Sans fonts load");
    });
}

pub(super) type DrawResult = Result<(), String>;

pub(super) fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// The figures there are; each draws itself on any plotters backend.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Main,
    CrossDataset,
    Memory,
    Sweep(SweepAxis),
    Lengths,
    PromptLength,
    Sensitivity,
}

impl Kind {
    fn draw<DB: DrawingBackend>(self, area: &DrawingArea<DB, Shift>, study: &Study) -> DrawResult {
        area.fill(&WHITE).map_err(err)?;
        match self {
            Self::Main => main(area, study),
            Self::CrossDataset => cross_dataset(area, study),
            Self::Memory => super::memory_figure::draw(area, study),
            Self::Sweep(axis) => sweep(area, study, axis),
            Self::Lengths => study_figures::draw_lengths(area, study),
            Self::PromptLength => study_figures::draw_prompt_length(area, study),
            Self::Sensitivity => study_figures::draw_sensitivity(area, study),
        }?;
        area.present().map_err(err)
    }
}

/// Draws every figure the study supports into `dir`; returns them in appendix order.
pub fn all(
    study: &Study,
    header: &Header,
    memory: &super::memory::MemoryTables,
    dir: &Path,
    written: &mut Written,
) -> Result<Vec<Figure>, ReportError> {
    register_fonts();
    let (n, d) = (study.shown.len() as u32, study.datasets.len() as u32);
    let bars_height = 220 + 70 * n * d.max(1);
    let mut planned = vec![
        (
            "main",
            Kind::Main,
            (2000, bars_height),
            "Throughput (mean over prompts, each prompt's repeats averaged first; bars: 95\\% Student-t interval over prompts) and speedup over AR per method and dataset (bars: 95\\% interval paired by prompt, the t-interval of the per-prompt log speedups).".to_string(),
        ),
        (
            "cross_dataset",
            Kind::CrossDataset,
            (COLUMN_PIXELS, 650),
            "Speedup over AR of each method on each dataset (dashed: AR).".to_string(),
        ),
    ];
    if memory.measured {
        planned.push((
            "memory",
            Kind::Memory,
            (2000, 220 + 60 * n * d.max(1)),
            format!(
                "Peak memory ({}) per method and dataset, stacked: weights of target and draft, key/value cache of the target, of the draft, and the rest (activations, logits, tree bookkeeping). Right: the change of the peak against AR on the same dataset, in MB (and \\%).",
                super::latex::escape(&memory.kind.replace('_', " "))
            ),
        ));
    }
    for axis in [SweepAxis::Depth, SweepAxis::Tau] {
        if sweep_values(study, axis).len() >= 2 {
            planned.push((
                axis.name(),
                Kind::Sweep(axis),
                (1800, 800),
                format!("Fixed Tree throughput against {} per branching factor (best over the other parameters; dashed: AR).", axis.caption()),
            ));
        }
    }
    let rows = study.datasets.len().max(1) as u32;
    if study_figures::lengths(study).len() >= 2 {
        planned.push((
            "length_scaling",
            Kind::Lengths,
            (2400, 200 + 560 * rows),
            "Generation-length scaling at each dataset's main prompt cap: throughput, tokens committed per verification round ($\\bar{L}$), accepted path length ($\\bar{\\ell}$) and the authors' acceptance against the number of new tokens T, per configuration.".to_string(),
        ));
    }
    let swept = study_figures::prompt_datasets(study).len() as u32;
    if swept > 0 {
        planned.push((
            "prompt_length",
            Kind::PromptLength,
            (1800, 200 + 560 * swept),
            "Prompt-length sensitivity: throughput and speedup over AR (measured at the same prompt cap) against the longest prompt in characters, per configuration.".to_string(),
        ));
    }
    let varied = study_figures::sensitivity_params(study);
    if !varied.is_empty() {
        planned.push((
            "sensitivity",
            Kind::Sensitivity,
            ((700 * varied.len() as u32).max(COLUMN_PIXELS), 760),
            format!(
                "DynaTree sensitivity: throughput against each DynaTree parameter the manifest varies ({}); dots: every DynaTree configuration at its value, line: their mean per value, dashed: AR and the best Fixed Tree on each dataset.",
                super::latex::escape(&varied.join(", "))
            ),
        ));
    }
    let mut figures = Vec::new();
    for (name, kind, size, caption) in planned {
        render(dir, name, kind, size, study, header, written)?;
        figures.push(Figure {
            name,
            caption,
            wide: size.0 > COLUMN_PIXELS,
        });
    }
    Ok(figures)
}

/// Renders one figure as PNG and SVG; the SVG starts with the provenance header.
fn render(
    dir: &Path,
    name: &str,
    kind: Kind,
    size: (u32, u32),
    study: &Study,
    header: &Header,
    written: &mut Written,
) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::output(dir, e))?;
    let png = dir.join(format!("{name}.png"));
    // The encoder picks the format from the extension, so the scratch file ends in `.png`.
    let scratch = dir.join(format!(".{name}.tmp-{}.png", std::process::id()));
    let drawn = kind.draw(
        &BitMapBackend::new(&scratch, size).into_drawing_area(),
        study,
    );
    let bytes = drawn.and_then(|()| std::fs::read(&scratch).map_err(err));
    let _ = std::fs::remove_file(&scratch);
    let bytes = bytes.and_then(|png| with_text_chunk(&png, &header.lines("")));
    written.put(
        png.clone(),
        &bytes.map_err(|e| ReportError::output(&png, e))?,
    )?;

    let svg_path = dir.join(format!("{name}.svg"));
    let mut svg = String::new();
    kind.draw(
        &SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        study,
    )
    .map_err(|e| ReportError::output(&svg_path, e))?;
    let comment = format!("<!--\n{}-->\n", header.lines("  ").replace("--", "- -"));
    written.put(svg_path, format!("{comment}{svg}").as_bytes())
}

/// The PNG with a `tEXt` chunk (keyword `Comment`) right after its header chunk: where a PNG
/// keeps the provenance the other files start with.
fn with_text_chunk(png: &[u8], text: &str) -> Result<Vec<u8>, String> {
    const SIGNATURE: usize = 8;
    // Signature, then IHDR: length (4) + type (4) + 13 bytes of data + CRC (4).
    let after_header = SIGNATURE + 4 + 4 + 13 + 4;
    if png.len() < after_header || &png[SIGNATURE + 4..SIGNATURE + 8] != b"IHDR" {
        return Err("the encoder wrote no PNG header".into());
    }
    // tEXt is Latin-1: keep ASCII so that the chunk is valid whatever the labels hold.
    let ascii: String = text
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    let mut chunk = b"tEXtComment\0".to_vec();
    chunk.extend_from_slice(ascii.as_bytes());
    let length = u32::try_from(chunk.len() - 4).map_err(err)?;
    let mut out = Vec::with_capacity(png.len() + chunk.len() + 8);
    out.extend_from_slice(&png[..after_header]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    out.extend_from_slice(&png[after_header..]);
    Ok(out)
}

pub(super) fn text_style(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
}

/// Left margin wide enough for the longest label at `size` pixels.
pub(super) fn label_width(labels: &[String], size: u32) -> u32 {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
    longest * size * 58 / 100 + 30
}

/// Throughput (with CI) beside speedup.
fn main<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, study: &Study) -> DrawResult {
    let area = area
        .margin(16, 0, 0, 0)
        .titled("Main results: throughput and speedup", text_style(44))
        .map_err(err)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 * 55 / 100);
    hbars(
        &left,
        study,
        &THROUGHPUT,
        "Throughput (tokens/s)",
        None,
        Some(|r| {
            Some((
                r.throughput - r.throughput_ci95,
                r.throughput + r.throughput_ci95,
            ))
        }),
    )?;
    hbars(
        &right,
        study,
        &SPEEDUP,
        "Speedup over AR (×)",
        Some(1.0),
        Some(|r| r.speedup_ci95),
    )
}

/// The interval an error bar spans, `(low, high)`.
type Interval = fn(&RunRow) -> Option<(f64, f64)>;

/// Horizontal grouped bars: one group per shown configuration, one bar per dataset.
fn hbars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
    metric: &Metric,
    x_desc: &str,
    reference: Option<f64>,
    interval: Option<Interval>,
) -> DrawResult {
    let labels: Vec<String> = study
        .shown
        .iter()
        .map(|&c| study.configs[c].label.clone())
        .collect();
    let groups = labels.len();
    let sets = study.datasets.len().max(1);
    let value = |g: usize, d: usize| study.cell(study.shown[g], d).and_then(metric.value);
    let span = |g: usize, d: usize| {
        study
            .cell(study.shown[g], d)
            .zip(interval)
            .and_then(|(r, f)| f(r))
    };
    let x_max = (0..groups)
        .flat_map(|g| (0..sets).map(move |d| (g, d)))
        .filter_map(|(g, d)| value(g, d).map(|v| span(g, d).map_or(v, |(_, hi)| hi.max(v))))
        .fold(reference.unwrap_or(0.0), f64::max)
        // Room on the right for the legend.
        * 1.45;
    let tick_decimals = if x_max >= 20.0 { 0 } else { 1 };
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(90)
        .y_label_area_size(label_width(&labels, 30))
        .build_cartesian_2d(0.0..x_max.max(1e-9), -0.5..groups as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.tick_decimals$}"))
        .y_labels(groups.max(1))
        .y_label_formatter(&|_| String::new())
        .x_desc(x_desc)
        .label_style(text_style(28))
        .axis_desc_style(text_style(32))
        .draw()
        .map_err(err)?;
    let height = 0.8 / sets as f64;
    for (d, (_, dataset)) in study.datasets.iter().enumerate() {
        let bar = |g: usize| {
            // The first dataset on top, as in the legend.
            let top = (groups - 1 - g) as f64 + 0.4 - height * d as f64;
            (top - height * 0.92, top)
        };
        let bars: Vec<_> = (0..groups)
            .filter_map(|g| value(g, d).map(|v| (g, v)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                let (y0, y1) = bar(g);
                Rectangle::new([(0.0, y0), (v, y1)], color(d).filled())
            }))
            .map_err(err)?
            .label(dataset.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 10), (x + 24, y + 10)], color(d).filled())
            });
        let whiskers: Vec<_> = bars
            .iter()
            .filter_map(|&(g, _)| span(g, d).map(|s| (g, s)))
            .collect();
        chart
            .draw_series(whiskers.iter().map(|&(g, (lo, hi))| {
                let (y0, y1) = bar(g);
                let y = (y0 + y1) / 2.0;
                PathElement::new(vec![(lo, y), (hi, y)], BLACK.stroke_width(3))
            }))
            .map_err(err)?;
    }
    if let Some(x) = reference {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, -0.5), (x, groups as f64 - 0.5)],
                12,
                8,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
    }
    draw_category_labels(&chart, area, &labels)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 28)
}

/// The series' legend in a white box with a black border.
pub(super) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    position: SeriesLabelPosition,
    size: u32,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(text_style(size))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Category names beside the y axis, top to bottom (plotters' numeric labels cannot be placed
/// on exact categories of a float axis).
pub(super) fn draw_category_labels<DB: DrawingBackend>(
    chart: &ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    area: &DrawingArea<DB, Shift>,
    labels: &[String],
) -> DrawResult {
    let (origin_x, origin_y) = area.get_base_pixel();
    let style = text_style(30).pos(Pos::new(HPos::Right, VPos::Center));
    for (g, label) in labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, (labels.len() - 1 - g) as f64));
        area.draw(&Text::new(
            label.clone(),
            (x - origin_x - 14, y - origin_y),
            style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Vertical grouped bars: one group per dataset, one bar per shown configuration.
fn cross_dataset<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, study: &Study) -> DrawResult {
    let sets = study.datasets.len();
    let configs = study.shown.len().max(1);
    // Headroom above the bars for the legend.
    let y_max = study.rows.iter().map(|r| r.speedup).fold(1.0, f64::max) * 1.75;
    let names: Vec<String> = study.datasets.iter().map(|(_, n)| n.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("Speedup over AR across datasets", text_style(36))
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(110)
        .build_cartesian_2d(-0.5..sets as f64 - 0.5, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_label_formatter(&|v| format!("{v:.1}"))
        .x_labels(sets.max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            names
                .get(i as usize)
                .filter(|_| (x - i).abs() < 1e-6 && i >= 0.0)
                .cloned()
                .unwrap_or_default()
        })
        .y_desc("Speedup over AR (×)")
        .label_style(text_style(30))
        .axis_desc_style(text_style(32))
        .draw()
        .map_err(err)?;
    let width = 0.8 / configs as f64;
    for (slot, &c) in study.shown.iter().enumerate() {
        let bars: Vec<(usize, f64)> = (0..sets)
            .filter_map(|d| study.cell(c, d).map(|r| (d, r.speedup)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(d, v)| {
                let x = d as f64 - 0.4 + width * slot as f64;
                Rectangle::new([(x, 0.0), (x + width * 0.9, v)], color(slot).filled())
            }))
            .map_err(err)?
            .label(study.configs[c].label.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 10), (x + 24, y + 10)], color(slot).filled())
            });
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(-0.5, 1.0), (sets as f64 - 0.5, 1.0)],
            12,
            8,
            BLACK.stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(text_style(27))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// The DynaTree parameter on the x axis of a sweep figure.
#[derive(Debug, Clone, Copy)]
enum SweepAxis {
    Depth,
    Tau,
}

impl SweepAxis {
    fn name(self) -> &'static str {
        match self {
            Self::Depth => "sweep_depth",
            Self::Tau => "sweep_tau",
        }
    }
    fn caption(self) -> &'static str {
        match self {
            Self::Depth => "tree depth $D$",
            Self::Tau => "pruning threshold $\\tau$",
        }
    }
    fn desc(self) -> &'static str {
        match self {
            Self::Depth => "Tree depth D",
            Self::Tau => "Pruning threshold τ",
        }
    }
    /// Enough tick requests that every swept value can get one.
    fn ticks(self, values: &[f64]) -> usize {
        match self {
            Self::Depth => (values[values.len() - 1] - values[0]) as usize + 1,
            Self::Tau => 6,
        }
    }
    /// Depths are whole numbers: other ticks stay blank.
    fn tick(self, value: f64) -> String {
        match self {
            Self::Depth if value.fract().abs() < 1e-9 => format!("{value:.0}"),
            Self::Depth => String::new(),
            Self::Tau => format!("{value:.2}"),
        }
    }
    fn of(self, method: &crate::decode::Method) -> Option<f64> {
        match method {
            crate::decode::Method::FixedTree(p) => Some(match self {
                Self::Depth => p.depth as f64,
                Self::Tau => p.tau,
            }),
            _ => None,
        }
    }
}

fn sweep_values(study: &Study, axis: SweepAxis) -> Vec<f64> {
    super::rows::distinct_sorted(study.rows.iter().filter_map(|r| axis.of(&r.method)))
}

/// Per dataset panel: throughput against the axis, one line per branching factor, each point
/// the best over the parameters not shown.
fn sweep<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    study: &Study,
    axis: SweepAxis,
) -> DrawResult {
    let title = format!("Fixed Tree sweep: throughput against {}", axis.desc());
    let area = area
        .margin(16, 0, 0, 0)
        .titled(&title, text_style(40))
        .map_err(err)?;
    let panels = area.split_evenly((1, study.datasets.len().max(1)));
    let xs = sweep_values(study, axis);
    let mut branches: Vec<usize> = study
        .rows
        .iter()
        .filter_map(|r| match &r.method {
            crate::decode::Method::FixedTree(p) => Some(p.branch),
            _ => None,
        })
        .collect();
    branches.sort_unstable();
    branches.dedup();
    for ((key, name), panel) in study.datasets.iter().zip(&panels) {
        let best = |branch: usize, x: f64| {
            study
                .rows
                .iter()
                .filter(|r| &r.dataset_key == key && axis.of(&r.method) == Some(x))
                .filter(|r| matches!(&r.method, crate::decode::Method::FixedTree(p) if p.branch == branch))
                .map(|r| r.throughput)
                .reduce(f64::max)
        };
        let y_max = study
            .rows
            .iter()
            .filter(|r| &r.dataset_key == key)
            .map(|r| r.throughput)
            .fold(0.0, f64::max)
            * 1.15;
        let (x0, x1) = (xs[0], xs[xs.len() - 1]);
        let pad = (x1 - x0) * 0.05;
        let mut chart = ChartBuilder::on(panel)
            .caption(name, text_style(34))
            .margin(20)
            .x_label_area_size(80)
            .y_label_area_size(120)
            .build_cartesian_2d(x0 - pad..x1 + pad, 0.0..y_max.max(1e-9))
            .map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(axis.ticks(&xs))
            .x_label_formatter(&|v| axis.tick(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(axis.desc())
            .y_desc("Throughput (tokens/s)")
            .label_style(text_style(26))
            .axis_desc_style(text_style(30))
            .draw()
            .map_err(err)?;
        for (i, &branch) in branches.iter().enumerate() {
            let points: Vec<(f64, f64)> = xs
                .iter()
                .filter_map(|&x| best(branch, x).map(|y| (x, y)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color(i).stroke_width(4)))
                .map_err(err)?
                .label(format!("B={branch}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color(i).stroke_width(4))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 8, color(i).filled())))
                .map_err(err)?;
        }
        if let Some(ar) = study
            .rows
            .iter()
            .find(|r| &r.dataset_key == key && r.method.name() == "ar")
        {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0 - pad, ar.throughput), (x1 + pad, ar.throughput)],
                    12,
                    8,
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label("AR")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(text_style(26))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
