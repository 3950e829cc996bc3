//! The published protocol in miniature (`experiments/tiny-published.toml`: the fixture pair,
//! short generations): `run` and `report` write every table and figure of the published paper,
//! per-dataset parameters make one row per configuration, and the appendix compiles.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{ok, output, repo};

struct Published {
    report: PathBuf,
}

fn dynatree(args: &[&str]) -> String {
    ok(output(common::dynatree().args(args)))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn published() -> &'static Published {
    static RUN: OnceLock<Published> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let manifest = repo("experiments/tiny-published.toml");
        let artifacts = dir.join("artifacts");
        let report = dir.join("report");
        dynatree(&["run", s(&manifest), "--artifacts", s(&artifacts)]);
        dynatree(&[
            "report",
            s(&manifest),
            "--artifacts",
            s(&artifacts),
            "--out",
            s(&report),
        ]);
        Published { report }
    })
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(published().report.join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn every_published_table_and_figure_is_written() {
    for table in [
        "speedup",
        "efficiency",
        "latency",
        "memory",
        "main",
        "ablation",
        "sweep",
    ] {
        let text = read(&format!("tables/{table}.tex"));
        assert!(text.contains("\\begin{tabular}"), "{table}");
    }
    for figure in [
        "main",
        "memory",
        "sweep_depth",
        "length_scaling",
        "prompt_length",
        "sensitivity",
    ] {
        for ext in ["png", "svg"] {
            let path = published().report.join(format!("figures/{figure}.{ext}"));
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            assert!(size > 5_000, "{} is missing or empty", path.display());
        }
    }
    let appendix = read("appendix.tex");
    for name in [
        "efficiency",
        "ablation",
        "length_scaling",
        "prompt_length",
        "sensitivity",
    ] {
        assert!(appendix.contains(name), "the appendix includes {name}");
    }
}

/// Linear ran with K = 8 on WikiText-2 and K = 5 on PG-19: one row, and the caption says so.
#[test]
fn per_dataset_parameters_make_one_row_and_a_caption_note() {
    let speedup = read("tables/speedup.tex");
    let rows: Vec<&str> = speedup
        .lines()
        .filter(|l| l.starts_with("Linear Spec"))
        .collect();
    assert_eq!(rows.len(), 1, "{speedup}");
    assert!(
        !rows[0].contains("---"),
        "both datasets have a value: {}",
        rows[0]
    );
    let dynatree_rows = speedup.lines().filter(|l| l.contains("DynaTree")).count();
    assert_eq!(
        dynatree_rows, 2,
        "history on and off, each one row over both datasets"
    );
    let appendix = read("appendix.tex");
    assert!(
        appendix.contains("K=8 on WikiText-2; K=5 on PG-19"),
        "the caption names each dataset's K"
    );
    assert!(appendix.contains("Dmax=8 on WikiText-2; Dmax=9 on PG-19"));
}

#[test]
fn the_ablation_names_variants_by_their_components() {
    let ablation = read("tables/ablation.tex");
    assert!(
        ablation.contains("Fixed Tree (D=8, B=3, $\\tau$=0.1)"),
        "{ablation}"
    );
    assert!(ablation.contains("+ History Adaptation"), "{ablation}");
    assert!(
        ablation.contains("+ Dynamic Breadth \\& Depth"),
        "{ablation}"
    );
    assert!(
        ablation.contains("0.0\\%"),
        "the reference row's own change"
    );
}

#[test]
fn the_efficiency_table_counts_ar_rounds_as_tokens() {
    let efficiency = read("tables/efficiency.tex");
    let ar = efficiency
        .lines()
        .find(|l| l.starts_with("AR &"))
        .expect("an AR row");
    let cells: Vec<&str> = ar.trim_end_matches(" \\\\").split(" & ").collect();
    // Accept., L, l, #Iter per dataset: AR commits one token per pass, 48 passes.
    assert_eq!(&cells[1..5], ["---", "1.00", "---", "48"], "{ar}");
}

#[test]
fn the_published_appendix_compiles() {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", published().report.display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("pdflatex")
        .args(["-interaction=nonstopmode", "-halt-on-error", "appendix.tex"])
        .current_dir(copy.path())
        .output()
        .expect("pdflatex is required (.ci/run installs it)");
    assert!(
        out.status.success(),
        "pdflatex failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let log = std::fs::read_to_string(copy.path().join("appendix.log")).unwrap_or_default();
    assert!(
        !log.contains("undefined"),
        "undefined references or commands"
    );
    assert!(
        !log.contains("Overfull \\hbox"),
        "a table or figure is wider than the page"
    );
}
