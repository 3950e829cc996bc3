//! Plan speed and memory: parses and expands a 1,000,000-point Fixed Tree grid (depth 1..=50 x
//! branch 1..=40 x 500 tau values, one dataset, with excludes), gives every point its run id as
//! `plan` does (streamed, one point at a time), and prints each stage's time and the peak heap.
//! Expansion must stay linear in time and flat in memory; this is the check.
//!
//! `cargo bench --bench grid`

use std::path::Path;
use std::time::Instant;

use dynatree::bench::identity::{run_config, Resolved, RunIds};
use dynatree::bench::memory::{self, CountingAlloc};
use dynatree::grid::Grid;
use dynatree::manifest::ManifestError;
use dynatree::{manifest, store};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Points whose ids are also computed from the whole config (as `plan` did before it streamed),
/// for the per-point comparison.
const FULL_CONFIG_SAMPLE: usize = 100_000;

fn list<T: ToString>(values: impl Iterator<Item = T>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// A manifest with 1,000,000 Fixed Tree points, minus 2 x 500 excluded (depth 50 x branch 40,
/// and depth 1 x branch 1), plus AR.
fn manifest_text() -> String {
    let depth = list(1..=50);
    let branch = list(1..=40);
    let tau = list((0..500).map(|i| format!("{:.3}", i as f64 / 500.0)));
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
branch = 40
[[sweep.exclude]]
method = "fixed_tree"
depth = 1
branch = 1
"#
    )
}

fn mib(bytes: Option<usize>) -> String {
    bytes.map_or("n/a".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    })
}

fn main() {
    let text = manifest_text();
    let start = Instant::now();
    let manifest = manifest::parse(&text, Path::new("bench.toml")).expect("bench manifest parses");
    let parsed = start.elapsed();
    let baseline = memory::peak_heap_bytes();
    memory::reset_peak();
    let start = Instant::now();
    let grid = Grid::new(&manifest).expect("bench manifest expands");
    let checked = start.elapsed();
    assert_eq!(grid.len(), 1 + 1_000_000 - 1_000);
    // Identities as `plan` resolves them once per manifest (file hashes are cached separately).
    let resolved = Resolved {
        target: json!({"files": {"model.safetensors": format!("sha256:{}", "a".repeat(64))}}),
        draft: Some(json!({"files": {"model.safetensors": format!("sha256:{}", "b".repeat(64))}})),
        datasets: [("text".to_string(), json!({"kind": "text", "files": {}}))].into(),
        device: json!({"kind": "cpu", "name": "bench"}),
    };
    let start = Instant::now();
    let mut ids = RunIds::new(&manifest, &resolved);
    let (mut count, mut checksum) = (0usize, 0u8);
    grid.try_each(|point| {
        let id = ids.id(&point);
        checksum ^= id.as_bytes()[0];
        count += 1;
        Ok::<(), ManifestError>(())
    })
    .expect("the checked grid walks");
    let identified = start.elapsed();
    let peak = memory::peak_heap_bytes();
    let start = Instant::now();
    let mut full = 0;
    grid.try_each(|point| {
        if full < FULL_CONFIG_SAMPLE {
            std::hint::black_box(store::run_id(&run_config(&manifest, &point, &resolved)));
            full += 1;
        }
        Ok::<(), ManifestError>(())
    })
    .expect("the checked grid walks");
    let per_full = start.elapsed().as_secs_f64() / FULL_CONFIG_SAMPLE as f64;
    let per_point = identified.as_secs_f64() / count as f64;
    println!(
        "grid: parse {:.1} ms, check {count} points {:.1} ms, run ids (streamed) {:.1} ms \
         ({:.2} us/point; from the whole config {:.2} us/point), total {:.2} s; \
         peak heap while planning {} (parsing peaked at {}) [{checksum}]",
        parsed.as_secs_f64() * 1e3,
        checked.as_secs_f64() * 1e3,
        identified.as_secs_f64() * 1e3,
        per_point * 1e6,
        per_full * 1e6,
        (parsed + checked + identified).as_secs_f64(),
        mib(peak),
        mib(baseline),
    );
}
