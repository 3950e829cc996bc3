//! Plan speed: parses and expands a 100,000-point Fixed Tree grid (depth 1..=50 x branch 1..=20 x
//! 100 tau values, one dataset, with excludes), gives every point its run id, and prints the
//! time of each stage. Expansion must stay linear in the number of points; this is the check.
//!
//! `cargo bench --bench grid`

use std::path::Path;
use std::time::Instant;

use dynatree::bench::identity::{run_config, Resolved};
use dynatree::{grid, manifest, store};
use serde_json::json;

fn list<T: ToString>(values: impl Iterator<Item = T>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// A manifest with 100,000 Fixed Tree points, minus 2 x 100 excluded (depth 50 x branch 20, and
/// depth 1 x branch 1), plus AR.
fn manifest_text() -> String {
    let depth = list(1..=50);
    let branch = list(1..=20);
    let tau = list((0..100).map(|i| format!("{:.2}", i as f64 / 100.0)));
    format!(
        r#"[experiment]
name = "grid-bench"
repeats = 1
[models]
target = {{ path = "target" }}
draft = {{ path = "draft" }}
dtype = "f32"
device = "cpu"
[datasets.text]
label = "Text"
kind = "text"
path = "text.parquet"
[prompts]
count = 1
max_chars = 100
[generation]
max_new_tokens = 8
[sweep]
dataset = ["text"]
method = ["fixed_tree"]
[sweep.fixed_tree]
depth = [{depth}]
branch = [{branch}]
tau = [{tau}]
max_nodes = [32]
[[sweep.exclude]]
depth = 50
branch = 20
[[sweep.exclude]]
method = "fixed_tree"
depth = 1
branch = 1
"#
    )
}

fn main() {
    let text = manifest_text();
    let start = Instant::now();
    let manifest = manifest::parse(&text, Path::new("bench.toml")).expect("bench manifest parses");
    let parsed = start.elapsed();
    let start = Instant::now();
    let points = grid::expand(&manifest).expect("bench manifest expands");
    let expanded = start.elapsed();
    assert_eq!(points.len(), 1 + 100_000 - 200);
    // Identities as `plan` resolves them once per manifest (file hashes are cached separately).
    let resolved = Resolved {
        target: json!({"files": {"model.safetensors": format!("sha256:{}", "a".repeat(64))}}),
        draft: Some(json!({"files": {"model.safetensors": format!("sha256:{}", "b".repeat(64))}})),
        datasets: [("text".to_string(), json!({"kind": "text", "files": {}}))].into(),
        device: json!({"kind": "cpu", "name": "bench"}),
    };
    let start = Instant::now();
    let ids: Vec<String> = points
        .iter()
        .map(|p| store::run_id(&run_config(&manifest, p, &resolved)))
        .collect();
    let identified = start.elapsed();
    assert_eq!(ids.len(), points.len());
    println!(
        "grid: parse {:.2} ms, expand {} points {:.2} ms, run ids {:.2} ms, plan total {:.2} ms",
        parsed.as_secs_f64() * 1e3,
        points.len(),
        expanded.as_secs_f64() * 1e3,
        identified.as_secs_f64() * 1e3,
        (parsed + expanded + identified).as_secs_f64() * 1e3
    );
}
