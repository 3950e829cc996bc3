//! Planning streams: giving every point of a large grid its id holds one point at a time, and
//! the streamed ids are the ids of the whole configs. One test per allocation measurement, in a
//! binary of its own, so that nothing else allocates meanwhile.

mod common;

use common::{dataset_toml, models_toml, WIKI_TEST, WIKI_TEST_SHA256};
use dynatree::bench::memory::{self, CountingAlloc};
use dynatree::bench::Planner;
use dynatree::manifest::{self, ManifestError};
use dynatree::model::HubSettings;
use std::path::Path;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn list(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(", ")
}

/// `depth x branch x taus` Fixed Tree points on the fixture pair, plus AR.
fn manifest_text(taus: usize) -> String {
    let tau = list((0..taus).map(|i| format!("{:.4}", i as f64 / taus as f64)));
    format!(
        "[experiment]\nname = \"scale\"\nrepeats = 1\n{}{}\
         [prompts]\ncount = 1\nmax_chars = 100\n[generation]\nmax_new_tokens = 8\n\
         [sweep]\ndataset = [\"wikitext2\"]\nmethod = [\"fixed_tree\"]\n\
         [sweep.fixed_tree]\ndepth = [{}]\nbranch = [{}]\ntau = [{tau}]\nmax_nodes = [32]\n",
        models_toml(),
        dataset_toml(
            "wikitext2",
            "WikiText-2",
            "wikitext",
            WIKI_TEST,
            WIKI_TEST_SHA256
        ),
        list((1..=10).map(|d| d.to_string())),
        list((1..=10).map(|b| b.to_string())),
    )
}

/// Peak heap above what was live before, while streaming every run of a grid.
fn streaming_peak(taus: usize) -> (usize, usize) {
    let text = manifest_text(taus);
    let manifest = manifest::parse(&text, Path::new("scale.toml")).unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let planner = Planner::new(&manifest, artifacts.path(), &HubSettings::from_env()).unwrap();
    memory::reset_peak();
    let live = memory::peak_heap_bytes().expect("the counting allocator is installed");
    let mut runs = 0;
    planner
        .try_each(|run| {
            assert_eq!(run.id.len(), 64);
            runs += 1;
            Ok::<(), ManifestError>(())
        })
        .unwrap();
    let peak = memory::peak_heap_bytes().unwrap() - live;
    (runs, peak)
}

#[test]
fn planning_memory_stays_flat_as_the_grid_grows() {
    let (small, small_peak) = streaming_peak(10);
    let (large, large_peak) = streaming_peak(1_000);
    assert_eq!((small, large), (1 + 1_000, 1 + 100_000));
    // One config and one point at a time: a few KiB whatever the grid (holding every config
    // took ~9.5 KB per point, ~1 GB here).
    assert!(large_peak < 64 << 10, "{large_peak} bytes for {large} runs");
    assert!(
        large_peak < small_peak + (16 << 10),
        "{small_peak} bytes for {small} runs, {large_peak} for {large}"
    );
}
