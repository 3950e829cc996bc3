//! The report stage end to end, on results of real runs of the fixture pair: aggregation
//! against the runner's own summaries, tables parsed back to `summary.csv`, the memory table's
//! exact Table 7 structure, a missing baseline, figures, pdflatex and byte-identical regeneration.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{dataset, models_toml, ok, output, AUSTEN, WIKI_TEST};
use polars::prelude::*;

/// PG-19 and WikiText-2; AR, linear, four trees (depth × τ, so both sweep figures appear) and
/// HF assisted; 2 prompts, 2 repeats; 12 tokens (the main tables) and 6.
fn manifest_text() -> String {
    format!(
        r#"
[experiment]
name = "report-test"
seed = 1
repeats = 2
warmup = 0

{models}
[datasets.pg19]
label = "PG-19"
kind = "pg19"
stand_in = "six Jane Austen novels in PG-19's schema, not PG-19"
path = "{pg19}"

[datasets.wikitext2]
label = "WikiText-2"
kind = "wikitext"
path = "{wikitext}"

[prompts]
count = 2
max_chars = 200

[generation]
max_new_tokens = [12, 6]
stop_at_eos = false

[sweep]
dataset = ["pg19", "wikitext2"]
method = ["ar", "linear", "fixed_tree", "dynatree", "hf_assisted"]

[sweep.linear]
k = [3]

[sweep.fixed_tree]
depth = [2, 4]
branch = [2]
tau = [0.0, 0.05]
max_nodes = [16]

[sweep.dynatree]
max_nodes = [16]
"#,
        models = models_toml(),
        pg19 = dataset(AUSTEN).display(),
        wikitext = dataset(WIKI_TEST).display(),
    )
}

/// Runs per generation length; the main tables show the first length's.
const RUNS: usize = 16;
const LENGTHS: usize = 2;

struct Fixture {
    dir: PathBuf,
    manifest: PathBuf,
}

impl Fixture {
    fn artifacts(&self) -> PathBuf {
        self.dir.join("artifacts")
    }
    fn report(&self) -> PathBuf {
        self.dir.join("report")
    }
}

fn dynatree(args: &[&str]) -> Output {
    output(common::dynatree().args(args))
}

/// `dynatree report MANIFEST --artifacts ARTIFACTS --out OUT`.
fn report(manifest: &Path, artifacts: &Path, out: &Path) -> Output {
    dynatree(&[
        "report",
        s(manifest),
        "--artifacts",
        s(artifacts),
        "--out",
        s(out),
    ])
}

/// The id of the first run of `method` in the fixture's summary.csv.
fn first_id(method: &str) -> String {
    let summary = read_csv(&fixture().artifacts().join("summary.csv"));
    (0..summary.height())
        .find(|&i| str_at(&summary, "method", i) == method)
        .map(|i| str_at(&summary, "id", i))
        .unwrap()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One real sweep and its report, shared by every test here (they only read it).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let manifest = dir.join("report-test.toml");
        std::fs::write(&manifest, manifest_text()).unwrap();
        let fixture = Fixture { dir, manifest };
        let artifacts = fixture.artifacts();
        ok(dynatree(&[
            "run",
            s(&fixture.manifest),
            "--artifacts",
            s(&artifacts),
        ]));
        ok(report(&fixture.manifest, &artifacts, &fixture.report()));
        fixture
    })
}

fn read_csv(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
}

fn f64_at(frame: &DataFrame, column: &str, row: usize) -> Option<f64> {
    frame
        .column(column)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .get(row)
}

fn str_at(frame: &DataFrame, column: &str, row: usize) -> String {
    frame
        .column(column)
        .unwrap()
        .str()
        .unwrap()
        .get(row)
        .unwrap_or_default()
        .to_string()
}

/// summary.csv rows at the main length (12 tokens) by (dataset label, config).
fn summary_rows() -> BTreeMap<(String, String), (usize, DataFrame)> {
    let frame = read_csv(&fixture().artifacts().join("summary.csv"));
    (0..frame.height())
        .filter(|&i| f64_at(&frame, "max_new_tokens", i) == Some(12.0))
        .map(|i| {
            (
                (str_at(&frame, "dataset", i), str_at(&frame, "config", i)),
                (i, frame.clone()),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn aggregation_reproduces_the_runners_summaries_and_speedups() {
    let fx = fixture();
    let frame = read_csv(&fx.artifacts().join("summary.csv"));
    assert_eq!(frame.height(), RUNS * LENGTHS);
    let mut ar_throughput = BTreeMap::new();
    for i in 0..frame.height() {
        let id = str_at(&frame, "id", i);
        let text = std::fs::read_to_string(fx.artifacts().join(format!("runs/{id}.json"))).unwrap();
        let result: serde_json::Value = serde_json::from_str(&text).unwrap();
        let summary = &result["summary"];
        let pairs = [
            (
                "throughput_mean",
                &summary["throughput_tokens_per_s"]["mean"],
            ),
            ("throughput_std", &summary["throughput_tokens_per_s"]["std"]),
            (
                "throughput_ci95",
                &summary["throughput_tokens_per_s"]["ci95"],
            ),
            ("ttft_ms_mean", &summary["ttft_ms"]["mean"]),
            ("ttft_ms_ci95", &summary["ttft_ms"]["ci95"]),
            ("tpot_ms_mean", &summary["tpot_ms"]["mean"]),
            ("tokens_per_target_pass", &summary["tokens_per_target_pass"]),
            ("draft_acceptance", &summary["draft_acceptance"]),
            ("paper_acceptance", &summary["paper_acceptance"]),
            ("mean_accepted_length", &summary["mean_accepted_length"]),
            ("rounds_per_generation", &summary["rounds_per_generation"]),
            ("draft_time_fraction", &summary["draft_time_fraction"]),
        ];
        for (column, expected) in pairs {
            let got = f64_at(&frame, column, i);
            match expected.as_f64() {
                Some(e) => assert!(close(got.unwrap(), e), "{id} {column}: {got:?} vs {e}"),
                None => assert_eq!(got, None, "{id} {column}"),
            }
        }
        let peak_mb = result["memory"]["peak_bytes"].as_f64().unwrap() / (1024.0 * 1024.0);
        assert!(close(f64_at(&frame, "peak_memory_mb", i).unwrap(), peak_mb));
        assert_eq!(str_at(&frame, "memory_kind", i), "host_heap");
        if str_at(&frame, "method", i) == "ar" {
            ar_throughput.insert(id, f64_at(&frame, "throughput_mean", i).unwrap());
        }
    }
    assert_eq!(
        ar_throughput.len(),
        2 * LENGTHS,
        "one AR baseline per dataset and length"
    );
    for i in 0..frame.height() {
        let baseline = ar_throughput[&str_at(&frame, "baseline_id", i)];
        let expected = f64_at(&frame, "throughput_mean", i).unwrap() / baseline;
        assert!(close(f64_at(&frame, "speedup", i).unwrap(), expected));
    }
    let per_prompt = read_csv(&fx.artifacts().join("per_prompt.csv"));
    assert_eq!(
        per_prompt.height(),
        RUNS * LENGTHS * 2,
        "two prompts per run"
    );
}

/// Mean, sample std and 95% half-width of `values`, computed here by hand: the quantile is
/// scipy's `t.ppf(0.975, 1)` = 12.7062, for this fixture's two prompts.
fn by_hand(values: &[f64]) -> (f64, f64, f64) {
    assert_eq!(values.len(), 2, "the fixture has two prompts");
    let mean = values.iter().sum::<f64>() / 2.0;
    let std = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
    (mean, std, 12.7062 * std / 2f64.sqrt())
}

#[test]
fn intervals_are_over_prompts_and_speedups_are_paired_by_prompt() {
    let fx = fixture();
    let summary = read_csv(&fx.artifacts().join("summary.csv"));
    let per_prompt = read_csv(&fx.artifacts().join("per_prompt.csv"));
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-3 * a.abs().max(b.abs()).max(1e-9);
    for i in 0..summary.height() {
        let id = str_at(&summary, "id", i);
        let rows: Vec<usize> = (0..per_prompt.height())
            .filter(|&j| str_at(&per_prompt, "id", j) == id)
            .collect();
        let column = |name: &str| -> Vec<f64> {
            rows.iter()
                .map(|&j| f64_at(&per_prompt, name, j).unwrap())
                .collect()
        };
        let (mean, std, ci) = by_hand(&column("throughput_mean"));
        assert!(
            near(f64_at(&summary, "throughput_mean", i).unwrap(), mean),
            "{id}"
        );
        assert!(
            near(f64_at(&summary, "throughput_std", i).unwrap(), std),
            "{id}"
        );
        assert!(
            near(f64_at(&summary, "throughput_ci95", i).unwrap(), ci),
            "{id}"
        );
        assert_eq!(
            f64_at(&summary, "throughput_n", i),
            Some(2.0),
            "n counts prompts"
        );
        let logs: Vec<f64> = column("speedup").iter().map(|s| s.ln()).collect();
        let (log_mean, _, log_ci) = by_hand(&logs);
        let interval = (
            f64_at(&summary, "speedup_ci95_low", i).unwrap(),
            f64_at(&summary, "speedup_ci95_high", i).unwrap(),
        );
        assert!(
            near(interval.0, (log_mean - log_ci).exp()),
            "{id} {interval:?}"
        );
        assert!(
            near(interval.1, (log_mean + log_ci).exp()),
            "{id} {interval:?}"
        );
        assert!(near(
            f64_at(&summary, "speedup_geomean", i).unwrap(),
            log_mean.exp()
        ));
        if str_at(&summary, "method", i) == "ar" {
            assert_eq!(interval, (1.0, 1.0), "AR against itself");
        }
    }
}

/// The body rows of a tabular (between the header's \midrule and \bottomrule), as cells.
fn body_rows(tex: &str) -> Vec<Vec<String>> {
    let body = tex
        .split("\\midrule\n")
        .skip(1)
        .collect::<Vec<_>>()
        .join("");
    body.lines()
        .take_while(|l| !l.starts_with("\\bottomrule"))
        .filter(|l| l.ends_with(" \\\\") && !l.starts_with("\\multicolumn"))
        .map(|l| {
            l.trim_end_matches(" \\\\")
                .split(" & ")
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// A printed number back to f64: `\textbf{1.23$\times$}` → 1.23, `$-$0.43\%` → -0.43.
fn parse_cell(cell: &str) -> Option<f64> {
    let plain = cell
        .replace("\\textbf{", "")
        .replace('}', "")
        .replace("$\\times$", "")
        .replace("\\%", "")
        .replace("$-$", "-");
    plain.trim().parse().ok()
}

fn table(name: &str) -> String {
    std::fs::read_to_string(fixture().report().join("tables").join(name)).unwrap()
}

/// The test manifest's labels and the configs of summary.csv they stand for.
fn config_of_label(label: &str) -> String {
    let label = label.replace("\\textbf{", "").replace('}', "");
    match label.as_str() {
        "AR" => "ar".into(),
        "Linear Spec (K=3)" => "linear k=3".into(),
        "DynaTree" => dynatree::decode::method_spec("dynatree")
            .unwrap()
            .build_with(&[("max_nodes", dynatree::decode::Param::Count(16))])
            .unwrap()
            .describe(),
        "HF Assisted" => {
            "hf_assisted num_assistant_tokens=5 schedule=heuristic confidence_threshold=0".into()
        }
        other => {
            let inner = other
                .strip_prefix("Fixed Tree (D=")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("unexpected label {other}"));
            let parts: Vec<&str> = inner.split(", ").collect();
            let tau = parts[2].trim_start_matches("$\\tau$=");
            format!(
                "fixed_tree depth={} branch=2 tau={tau} max_nodes=16",
                parts[0]
            )
        }
    }
}

#[test]
fn speedup_and_main_tables_parse_back_to_summary_csv() {
    let rows = summary_rows();
    let datasets = ["PG-19", "WikiText-2"];
    let speedup = body_rows(&table("speedup.tex"));
    assert_eq!(speedup.len(), RUNS / 2, "one row per configuration");
    for cells in &speedup {
        assert_eq!(cells.len(), 5, "{cells:?}");
        let config = config_of_label(&cells[0]);
        for (d, dataset) in datasets.iter().enumerate() {
            let (i, frame) = &rows[&(dataset.to_string(), config.clone())];
            let throughput = f64_at(frame, "throughput_mean", *i).unwrap();
            let ratio = f64_at(frame, "speedup", *i).unwrap();
            let std = f64_at(frame, "throughput_std", *i).unwrap();
            let (mean_cell, std_cell) = cells[1 + 2 * d]
                .split_once(" $\\pm$ ")
                .expect("the published layout: mean $\\pm$ std");
            assert_eq!(
                parse_cell(mean_cell),
                Some((throughput * 10.0).round() / 10.0)
            );
            assert_eq!(parse_cell(std_cell), Some((std * 10.0).round() / 10.0));
            assert_eq!(
                parse_cell(&cells[2 + 2 * d]),
                Some((ratio * 100.0).round() / 100.0)
            );
        }
    }
    let main = table("main.tex");
    assert!(main.contains("\\multicolumn{6}{l}{\\textit{PG-19}}"));
    let main_rows = body_rows(&main);
    assert_eq!(main_rows.len(), RUNS);
    for (n, cells) in main_rows.iter().enumerate() {
        let dataset = datasets[n / (RUNS / 2)];
        let (i, frame) = &rows[&(dataset.to_string(), config_of_label(&cells[0]))];
        let percent = |column| f64_at(frame, column, *i).map(|a| (a * 1000.0).round() / 10.0);
        assert_eq!(
            parse_cell(&cells[3]),
            percent("draft_acceptance"),
            "{cells:?}"
        );
        assert_eq!(
            parse_cell(&cells[4]),
            percent("paper_acceptance"),
            "{cells:?}"
        );
        let per_pass = f64_at(frame, "tokens_per_target_pass", *i).unwrap();
        assert_eq!(
            parse_cell(&cells[5]),
            Some((per_pass * 100.0).round() / 100.0)
        );
        // Throughput as the paper prints it: mean ± std over prompts.
        let (mean, std) = cells[1].split_once(" $\\pm$ ").expect("mean ± std");
        let round1 = |v: f64| (v * 10.0).round() / 10.0;
        assert_eq!(
            parse_cell(mean),
            Some(round1(f64_at(frame, "throughput_mean", *i).unwrap()))
        );
        assert_eq!(
            parse_cell(std),
            Some(round1(f64_at(frame, "throughput_std", *i).unwrap()))
        );
    }
    let bold_speedups = speedup
        .iter()
        .filter(|c| c[2].starts_with("\\textbf{"))
        .count();
    assert!(bold_speedups >= 1, "the best speedup is marked");
}

#[test]
fn sweep_table_has_the_best_configuration_per_length_and_dataset() {
    let frame = read_csv(&fixture().artifacts().join("summary.csv"));
    let rows = body_rows(&table("sweep.tex"));
    assert_eq!(rows.len(), LENGTHS * 2, "{rows:?}");
    for cells in &rows {
        let (length, dataset) = (cells[0].parse::<f64>().unwrap(), cells[1].as_str());
        let best = (0..frame.height())
            .filter(|&i| f64_at(&frame, "max_new_tokens", i) == Some(length))
            .filter(|&i| {
                str_at(&frame, "dataset", i) == dataset && str_at(&frame, "method", i) != "ar"
            })
            .max_by(|&a, &b| {
                let speedup = |i| f64_at(&frame, "speedup", i).unwrap();
                speedup(a).total_cmp(&speedup(b))
            })
            .unwrap();
        assert_eq!(config_of_label(&cells[2]), str_at(&frame, "config", best));
        let speedup = f64_at(&frame, "speedup", best).unwrap();
        assert_eq!(
            parse_cell(&cells[4]),
            Some((speedup * 100.0).round() / 100.0)
        );
    }
    assert_eq!(rows[0][0], "6", "lengths ascending");
}

#[test]
fn memory_table_has_the_exact_table_7_structure() {
    let tex = table("memory.tex");
    let lines: Vec<&str> = tex.lines().filter(|l| !l.starts_with('%')).collect();
    assert_eq!(lines[0], "\\begin{tabular}{lrrrr}");
    assert_eq!(lines[1], "\\toprule");
    assert_eq!(
        lines[2],
        " & \\multicolumn{2}{c}{Peak Memory (MB)} &  &  \\\\"
    );
    assert_eq!(lines[3], "\\cmidrule(lr){2-3}");
    assert_eq!(
        lines[4],
        "Method & PG-19 & WikiText-2 & Average (MB) & Rel. Change vs AR \\\\"
    );
    assert_eq!(lines[5], "\\midrule");
    assert_eq!(lines[lines.len() - 2], "\\bottomrule");
    assert_eq!(lines[lines.len() - 1], "\\end{tabular}");
    let rows = body_rows(&tex);
    let summary = summary_rows();
    assert_eq!(rows.len(), RUNS / 2);
    assert_eq!(rows[0][0], "AR");
    assert_eq!(rows[0][4], "0.00\\%", "the paper prints AR's own change");
    // From summary.csv, unrounded: the table's change is computed before rounding.
    let ar_average = ["PG-19", "WikiText-2"]
        .iter()
        .map(|d| {
            let (i, frame) = &summary[&(d.to_string(), "ar".to_string())];
            f64_at(frame, "peak_memory_mb", *i).unwrap()
        })
        .sum::<f64>()
        / 2.0;
    for cells in &rows {
        assert_eq!(cells.len(), 5);
        let config = config_of_label(&cells[0]);
        assert_eq!(
            cells[0].starts_with("\\textbf{"),
            config.starts_with("dynatree")
        );
        let memory: Vec<f64> = ["PG-19", "WikiText-2"]
            .iter()
            .map(|d| {
                let (i, frame) = &summary[&(d.to_string(), config.clone())];
                f64_at(frame, "peak_memory_mb", *i).unwrap()
            })
            .collect();
        for (d, mb) in memory.iter().enumerate() {
            assert_eq!(
                parse_cell(&cells[1 + d]),
                Some((mb * 100.0).round() / 100.0)
            );
        }
        let average = (memory[0] + memory[1]) / 2.0;
        assert_eq!(
            parse_cell(&cells[3]),
            Some((average * 100.0).round() / 100.0)
        );
        if config != "ar" {
            let change = parse_cell(&cells[4]).unwrap();
            let signed =
                cells[4].starts_with("$-$") || cells[4].starts_with('+') || cells[4] == "0.00\\%";
            assert!(signed && cells[4].ends_with("\\%"), "{}", cells[4]);
            let expected = (average / ar_average - 1.0) * 100.0;
            assert!((change - expected).abs() < 0.02, "{change} vs {expected}");
        }
    }
}

#[test]
fn every_generated_file_names_its_origin() {
    let fx = fixture();
    let summary = read_csv(&fx.artifacts().join("summary.csv"));
    let ids: Vec<String> = (0..summary.height())
        .map(|i| str_at(&summary, "id", i))
        .collect();
    for name in [
        "tables/memory.tex",
        "tables/sweep.tex",
        "numbers.tex",
        "appendix.tex",
        "figures/main.svg",
    ] {
        let text = std::fs::read_to_string(fx.report().join(name)).unwrap();
        let head: String = text.lines().take(20).collect::<Vec<_>>().join("\n");
        assert!(head.contains("Generated by dynatree"), "{name}");
        assert!(head.contains("git commit"), "{name}");
        assert!(head.contains("Device: cpu"), "{name}");
        assert!(head.contains("Results dated 20"), "{name}");
        for id in &ids {
            assert!(text.contains(id.as_str()), "{name} lacks run {id}");
        }
    }
}

#[test]
fn numbers_define_every_command_the_appendix_cites() {
    let fx = fixture();
    let numbers = std::fs::read_to_string(fx.report().join("numbers.tex")).unwrap();
    let appendix = std::fs::read_to_string(fx.report().join("appendix.tex")).unwrap();
    assert!(numbers.contains("\\newcommand{\\dtSpeedupLinearSpecKThreePGOneNine}{"));
    assert!(numbers.contains("\\newcommand{\\dtBestSpeedupWikiTextTwo}{"));
    for cited in appendix.split("\\dt").skip(1) {
        let name: String = cited
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        assert!(
            numbers.contains(&format!("\\newcommand{{\\dt{name}}}")),
            "{name}"
        );
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The `Comment` tEXt chunk of a PNG, checking every chunk's CRC on the way.
fn text_chunk(png: &[u8]) -> String {
    let mut at = 8;
    let mut comment = String::new();
    while at + 12 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let body = &png[at + 4..at + 8 + length];
        let crc = u32::from_be_bytes(png[at + 8 + length..at + 12 + length].try_into().unwrap());
        assert_eq!(crc32fast::hash(body), crc, "chunk CRC");
        if let Some(text) = body.strip_prefix(b"tEXtComment\0") {
            comment = String::from_utf8_lossy(text).to_string();
        }
        at += 12 + length;
    }
    assert_eq!(at, png.len(), "chunks cover the file");
    comment
}

#[test]
fn figures_are_non_empty_png_and_svg_with_their_titles() {
    let dir = fixture().report().join("figures");
    let titles = [
        ("main", "Main results: throughput and speedup"),
        ("cross_dataset", "Speedup over AR across datasets"),
        ("memory", "Peak memory (host heap) and its parts"),
        (
            "sweep_depth",
            "Fixed Tree sweep: throughput against Tree depth D",
        ),
        (
            "sweep_tau",
            "Fixed Tree sweep: throughput against Pruning threshold τ",
        ),
    ];
    for (name, title) in titles {
        let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
        let (w, h) = png_size(&png);
        assert!(w >= 900 && h >= 500, "{name}: {w}x{h}");
        assert!(
            png.len() > 20_000,
            "{name}.png has content ({} bytes)",
            png.len()
        );
        let comment = text_chunk(&png);
        assert!(
            comment.starts_with("Generated by dynatree"),
            "{name}.png: {comment}"
        );
        let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains(title), "{name}.svg titled {title:?}");
        assert!(svg.contains("WikiText-2") && svg.contains("<rect") || svg.contains("<polyline"));
    }
    let memory = std::fs::read_to_string(dir.join("memory.svg")).unwrap();
    for part in [
        "weights (target + draft)",
        "KV cache, target",
        "KV cache, draft",
        "rest",
        "Change vs AR (MB)",
    ] {
        assert!(memory.contains(part), "memory.svg shows {part:?}");
    }
}

#[test]
fn the_appendix_compiles_with_pdflatex() {
    let which = Command::new("pdflatex").arg("--version").output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "pdflatex is required: apt-get install texlive-latex-base texlive-latex-recommended (.ci/run does)"
    );
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture().report(), copy.path());
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "appendix.tex"])
        .current_dir(copy.path())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(copy.path().join("appendix.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "pdflatex failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let pdf = std::fs::read(copy.path().join("appendix.pdf")).unwrap();
    assert!(pdf.starts_with(b"%PDF") && pdf.len() > 50_000);
    assert!(
        !log.contains("Overfull \\hbox"),
        "a table or figure is wider than the page"
    );
    assert!(
        !log.contains("undefined"),
        "undefined references or commands"
    );
    // pdflatex lists the font files it embedded; `...600pk>` would be a bitmap (Type 3) font,
    // which publishers reject.
    assert!(!log.contains("pk>"), "bitmap fonts embedded");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    files
}

#[test]
fn regenerating_from_unchanged_results_rewrites_identical_bytes() {
    let fx = fixture();
    let artifacts = fx.artifacts();
    let fresh = fx.dir.join("report-again");
    ok(report(&fx.manifest, &artifacts, &fresh));
    let first = snapshot(&fx.report());
    let second = snapshot(&fresh);
    assert_eq!(first.len(), second.len());
    for ((a, bytes_a), (_, bytes_b)) in first.iter().zip(&second) {
        assert!(
            bytes_a == bytes_b,
            "{} differs when regenerated",
            a.display()
        );
    }
    let again = ok(report(&fx.manifest, &artifacts, &fresh));
    assert!(again.contains(" 0 changed"), "{again}");
}

#[test]
fn a_missing_baseline_is_an_error_not_a_speedup_of_one() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let artifacts = copied_artifacts(dir.path());
    let removed = first_id("ar");
    std::fs::remove_file(artifacts.join(format!("runs/{removed}.json"))).unwrap();
    let out = dynatree(&["aggregate", "--artifacts", s(&artifacts)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("have no AR baseline"), "{stderr}");
    assert!(
        stderr.contains(&removed[..12]),
        "names the missing AR run: {stderr}"
    );
    assert!(
        !artifacts.join("summary.csv").exists(),
        "nothing half-aggregated is written"
    );
    let out = report(&fx.manifest, &artifacts, &dir.path().join("r"));
    assert!(!out.status.success());
}

/// The fixture's results copied into a fresh artifacts directory.
fn copied_artifacts(into: &Path) -> PathBuf {
    let artifacts = into.join("artifacts");
    std::fs::create_dir_all(artifacts.join("runs")).unwrap();
    for entry in std::fs::read_dir(fixture().artifacts().join("runs")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            artifacts.join("runs").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    artifacts
}

#[test]
fn a_manifest_with_runs_not_done_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wider.toml");
    std::fs::write(&manifest, manifest_text().replace("k = [3]", "k = [3, 5]")).unwrap();
    let artifacts = copied_artifacts(dir.path());
    let out = report(&manifest, &artifacts, &dir.path().join("r"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // k=5 on two datasets at two lengths.
    assert!(
        stderr.contains(&format!("4 of {} runs are not done", RUNS * LENGTHS + 4)),
        "{stderr}"
    );
    assert!(
        stderr.contains("linear k=5"),
        "names a pending run: {stderr}"
    );
    assert!(stderr.contains("run `dynatree run"), "{stderr}");
    assert!(!dir.path().join("r").exists(), "no partial report");
}

#[test]
fn a_run_that_is_not_lossless_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = copied_artifacts(dir.path());
    let linear = first_id("linear");
    let store = dynatree::store::Store::open(&artifacts).unwrap();
    let mut result = store.read_result(&linear).unwrap().unwrap();
    result["lossless"] = serde_json::json!(false);
    store.write_result(&linear, result).unwrap();
    let out = report(&fixture().manifest, &artifacts, &dir.path().join("r"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs whose output differs from AR cannot be reported"),
        "{stderr}"
    );
    assert!(stderr.contains(&linear), "{stderr}");
}

#[test]
fn a_result_without_a_lossless_flag_is_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = copied_artifacts(dir.path());
    let tree = first_id("fixed_tree");
    let store = dynatree::store::Store::open(&artifacts).unwrap();
    let mut result = store.read_result(&tree).unwrap().unwrap();
    result.as_object_mut().unwrap().remove("lossless");
    // Stamped anew, so that it verifies: only the missing flag is wrong.
    store.write_result(&tree, result).unwrap();
    let out = report(&fixture().manifest, &artifacts, &dir.path().join("r"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&tree), "names the result: {stderr}");
    assert!(stderr.contains("missing field `lossless`"), "{stderr}");
    assert!(!dir.path().join("r").exists(), "no partial report");
}

#[test]
fn a_memory_table_never_mixes_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = copied_artifacts(dir.path());
    // A run the memory table shows: at the first generation length.
    let summary = read_csv(&fixture().artifacts().join("summary.csv"));
    let linear = (0..summary.height())
        .find(|&i| {
            str_at(&summary, "method", i) == "linear"
                && f64_at(&summary, "max_new_tokens", i) == Some(12.0)
        })
        .map(|i| str_at(&summary, "id", i))
        .unwrap();
    let store = dynatree::store::Store::open(&artifacts).unwrap();
    let mut result = store.read_result(&linear).unwrap().unwrap();
    result["memory"]["kind"] = serde_json::json!("gpu_allocated");
    store.write_result(&linear, result).unwrap();
    let out = report(&fixture().manifest, &artifacts, &dir.path().join("r"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("runs measured different memory: host_heap on cpu and gpu_allocated on cpu"),
        "{stderr}"
    );
    assert!(stderr.contains(&linear[..12]), "names the run: {stderr}");
}

#[test]
fn unmeasured_memory_is_said_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = copied_artifacts(dir.path());
    let store = dynatree::store::Store::open(&artifacts).unwrap();
    // As a CUDA run records it before GPU memory is measured: the kind, no peak.
    for id in store.done_ids().unwrap() {
        let mut result = store.read_result(&id).unwrap().unwrap();
        result["memory"]["kind"] = serde_json::json!("gpu_allocated");
        result["memory"]["device"] = serde_json::json!("cuda");
        result["memory"]["peak_bytes"] = serde_json::Value::Null;
        result["memory"]["rest_bytes"] = serde_json::Value::Null;
        store.write_result(&id, result).unwrap();
    }
    let out_dir = dir.path().join("r");
    let out = report(&fixture().manifest, &artifacts, &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    for table in ["tables/memory.tex", "tables/memory_breakdown.tex"] {
        let tex = read(table);
        assert!(
            tex.contains("not measured: this build has no measurement of gpu\\_allocated on cuda"),
            "{tex}"
        );
        assert!(body_rows(&tex).is_empty(), "no numbers: {tex}");
    }
    assert!(!out_dir.join("figures/memory.png").exists());
    assert!(read("appendix.tex").contains("Peak memory: not measured"));
}

#[test]
fn every_caption_and_header_says_which_data_is_a_stand_in() {
    let appendix = std::fs::read_to_string(fixture().report().join("appendix.tex")).unwrap();
    let captions: Vec<&str> = appendix
        .lines()
        .filter(|l| l.starts_with("\\caption{"))
        .collect();
    assert!(captions.len() >= 8, "{appendix}");
    let note =
        "\\textbf{PG-19 is a stand-in:} six Jane Austen novels in PG-19's schema, not PG-19.";
    for caption in &captions {
        assert!(caption.contains(note), "{caption}");
    }
    let main = table("main.tex");
    assert!(
        main.lines()
            .take_while(|l| l.starts_with('%'))
            .any(|l| l.contains("PG-19 is a stand-in: six Jane Austen novels")),
        "{main}"
    );
}
