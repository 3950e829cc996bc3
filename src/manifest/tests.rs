use super::*;
use crate::decode::{Method, Schedule, TreeParams};
use crate::grid;

const WIKI_SHA: &str = "sha256:9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345";

/// The issue's example, with a real digest and the pg19 dataset it sweeps over defined.
const EXAMPLE: &str = r#"[experiment]
name = "paper-main"
description = "DynaTree vs baselines, Pythia-70M -> Pythia-2.8B"
seed = 0
repeats = 10
warmup = 2

[models]
target = { hub = "EleutherAI/pythia-2.8b", revision = "main" }   # or { path = "some/dir" }
draft = { hub = "EleutherAI/pythia-70m", revision = "main" }
dtype = "f16"
device = "auto"

[datasets.wikitext2]
label = "WikiText-2"
kind = "wikitext"
hub = "Salesforce/wikitext"                                   # or path = "file.parquet"
files = { "wikitext-2-raw-v1/test-00000-of-00001.parquet" = "sha256:9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345" }

[datasets.pg19]
label = "PG-19"
kind = "pg19"
path = "data/pg19.parquet"

[prompts]
count = 10
max_chars = 800

[generation]
max_new_tokens = 500
stop_at_eos = false

[sweep]
dataset = ["wikitext2", "pg19"]
method = ["ar", "linear", "fixed_tree", "hf_assisted"]

[sweep.linear]
k = [6, 7]

[sweep.fixed_tree]
depth = [6, 7]
branch = [2]
tau = [0.03, 0.05]
max_nodes = [32]

[sweep.hf_assisted]
num_assistant_tokens = [5]
schedule = ["heuristic"]

[[sweep.exclude]]
method = "fixed_tree"
depth = 7
tau = 0.03
"#;

const FILE: &str = "experiments/x.toml";

fn example() -> Manifest {
    parse(EXAMPLE, Path::new(FILE)).unwrap()
}

/// The example with one edit; panics if the edit does not apply, so tests cannot go stale.
fn edited(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "{from:?} not in the example");
    EXAMPLE.replacen(from, to, 1)
}

fn error(text: &str) -> String {
    let err = parse(text, Path::new(FILE)).unwrap_err().to_string();
    println!("{err}");
    err
}

/// "FILE:LINE:COL" of the first occurrence of `needle` after `after`.
fn at(text: &str, after: &str, needle: &str) -> String {
    let start = text.find(after).expect("anchor");
    let offset = start + text[start..].find(needle).expect("needle");
    let (line, col) = reader::line_col(text, offset);
    format!("{FILE}:{line}:{col}")
}

fn tree(depth: usize, tau: f64) -> Method {
    Method::FixedTree(TreeParams {
        depth,
        branch: 2,
        tau,
        max_nodes: 32,
    })
}

#[test]
fn example_parses_with_defaults() {
    let m = example();
    assert_eq!(m.experiment.name, "paper-main");
    assert_eq!((m.experiment.repeats, m.experiment.warmup), (10, 2));
    assert_eq!(
        m.models.target,
        ModelRef::Hub {
            hub: "EleutherAI/pythia-2.8b".into(),
            revision: "main".into()
        }
    );
    let wiki = &m.datasets["wikitext2"];
    assert_eq!(wiki.column, "text");
    let DatasetSource::Hub {
        revision, files, ..
    } = &wiki.source
    else {
        panic!("wikitext2 is a hub dataset")
    };
    assert_eq!(revision, "main");
    assert_eq!(
        files["wikitext-2-raw-v1/test-00000-of-00001.parquet"].as_deref(),
        Some(WIKI_SHA)
    );
    assert_eq!(
        m.prompts,
        PromptRules {
            count: 10,
            max_chars: [("pg19", vec![800]), ("wikitext2", vec![800])]
                .into_iter()
                .map(|(d, v)| (d.to_string(), v))
                .collect()
        }
    );
    assert!(!m.generation.stop_at_eos);
    let hf = m.sweep.method[3].axis("confidence_threshold").unwrap();
    assert_eq!(hf.values, [Param::Probability(0.0)]);
    assert_eq!(m.sweep.exclude[0].at.to_string(), format!("{FILE}:50:1"));
}

#[test]
fn example_expands_in_documented_order() {
    let points = grid::expand(&example()).unwrap();
    let hf = Method::hf_assisted_default();
    let per_dataset = [
        Method::Ar,
        Method::Linear { k: 6 },
        Method::Linear { k: 7 },
        tree(6, 0.03),
        tree(6, 0.05),
        tree(7, 0.05), // depth 7, tau 0.03 is excluded
        hf,
    ];
    let expected: Vec<grid::GridPoint> = ["wikitext2", "pg19"]
        .iter()
        .flat_map(|d| {
            per_dataset.iter().map(|m| grid::GridPoint {
                dataset: d.to_string(),
                max_chars: 800,
                max_new_tokens: 500,
                method: m.clone(),
            })
        })
        .collect();
    assert_eq!(points.len(), 14);
    assert_eq!(points, expected);
}

#[test]
fn several_generation_lengths_are_an_axis_inside_each_dataset() {
    let text = edited("max_new_tokens = 500", "max_new_tokens = [128, 500]");
    let m = parse(&text, Path::new(FILE)).unwrap();
    assert_eq!(m.generation.max_new_tokens, [128, 500]);
    let points = grid::expand(&m).unwrap();
    assert_eq!(points.len(), 28);
    let blocks: Vec<(&str, usize)> = points
        .iter()
        .filter(|p| p.method == Method::Ar)
        .map(|p| (p.dataset.as_str(), p.max_new_tokens))
        .collect();
    let expected = [
        ("wikitext2", 128),
        ("wikitext2", 500),
        ("pg19", 128),
        ("pg19", 500),
    ];
    assert_eq!(blocks, expected, "AR heads every dataset × length block");
    let text = edited("max_new_tokens = 500", "max_new_tokens = [128, 128]");
    assert!(error(&text).contains("generation.max_new_tokens[1]: 128 is listed twice"));
    let text = edited("max_new_tokens = 500", "max_new_tokens = []");
    assert!(error(&text).contains("must not be empty"));
    let text = edited("max_new_tokens = 500", "max_new_tokens = [0]");
    assert!(error(&text).contains("must be at least 1"));
}

#[test]
fn serializes_as_written() {
    let value = serde_json::to_value(example()).unwrap();
    assert_eq!(
        value["models"]["draft"],
        serde_json::json!({"hub": "EleutherAI/pythia-70m", "revision": "main"})
    );
    assert_eq!(
        value["datasets"]["pg19"]["path"],
        "experiments/data/pg19.parquet"
    );
    assert_eq!(value["datasets"]["pg19"]["sha256"], serde_json::Value::Null);
    assert_eq!(
        value["sweep"]["method"][2]["axes"][2]["values"],
        serde_json::json!([0.03, 0.05])
    );
    assert_eq!(
        value["sweep"]["exclude"][0],
        serde_json::json!({"method": "fixed_tree", "dataset": null, "params": {"depth": 7, "tau": 0.03}})
    );
}

#[test]
fn shipped_manifests_load_and_expand() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for (name, runs) in [
        ("paper.toml", 2 * (1 + 2 + 2 + 1)),
        ("sweep.toml", 1 + 6 * 3 * 5),
        ("cpu.toml", 4),
        ("lengths.toml", 2 * 5 * (1 + 1 + 3 * 2)),
        ("tiny.toml", 2 * (1 + 2 + 4 + 1 + 1)),
        ("tiny-published.toml", (2 + 1) * 2 * (1 + 1 + 2 + 2)),
        ("published.toml", 2 * 4),
        ("published-fixed-tree-sweep.toml", 1 + 6 * 3 * 5),
        ("published-sensitivity.toml", 1 + 1 + 1 + 9),
        ("published-ablation.toml", 1 + 1 + 3),
        ("published-lengths.toml", 7 * 4),
        ("published-prompt-length.toml", 7 * 4),
    ] {
        let m = load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        let points = grid::expand(&m).unwrap();
        assert_eq!(points.len(), runs, "{name}");
        assert_eq!(points[0].method, Method::Ar);
    }
}

/// The published protocol: exactly these eight runs.
#[test]
fn the_published_manifest_plans_the_papers_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let m = load(&dir.join("published.toml")).unwrap();
    let described: Vec<String> = grid::expand(&m)
        .unwrap()
        .iter()
        .map(|p| {
            let params: Vec<String> = ["k", "depth", "branch", "tau", "max_nodes", "max_depth"]
                .iter()
                .filter_map(|n| p.method.value(n).map(|v| format!("{n}={v}")))
                .collect();
            format!(
                "{} {} {} {} {}",
                p.dataset,
                p.max_chars,
                p.max_new_tokens,
                p.method.name(),
                params.join(" ")
            )
        })
        .collect();
    let expected = [
        "wikitext2 800 1500 ar ",
        "wikitext2 800 1500 linear k=8",
        "wikitext2 800 1500 fixed_tree depth=8 branch=3 tau=0.1 max_nodes=256",
        "wikitext2 800 1500 dynatree tau=0.05 max_nodes=256 max_depth=8",
        "pg19 1000 1500 ar ",
        "pg19 1000 1500 linear k=5",
        "pg19 1000 1500 fixed_tree depth=8 branch=3 tau=0.1 max_nodes=256",
        "pg19 1000 1500 dynatree tau=0.05 max_nodes=256 max_depth=9",
    ];
    assert_eq!(described, expected);
    assert_eq!((m.prompts.count, m.experiment.warmup), (10, 2));
    let dynatree = grid::expand(&m).unwrap()[3].method.clone();
    let defaults = Method::default_of("dynatree").unwrap();
    assert_eq!(dynatree, defaults, "the authors' defaults on WikiText-2");
}

#[test]
fn per_dataset_tables_replace_axes_on_one_dataset() {
    let text = edited(
        "[sweep.hf_assisted]",
        "[sweep.linear.dataset.pg19]\nk = [3]\n\n[sweep.hf_assisted]",
    );
    let m = parse(&text, Path::new(FILE)).unwrap();
    let ks = |d: &str| -> Vec<Method> {
        grid::expand(&m)
            .unwrap()
            .into_iter()
            .filter(|p| p.dataset == d && p.method.name() == "linear")
            .map(|p| p.method)
            .collect()
    };
    assert_eq!(
        ks("wikitext2"),
        [Method::Linear { k: 6 }, Method::Linear { k: 7 }]
    );
    assert_eq!(ks("pg19"), [Method::Linear { k: 3 }]);
    let unknown = edited(
        "[sweep.hf_assisted]",
        "[sweep.linear.dataset.pg20]\nk = [3]\n\n[sweep.hf_assisted]",
    );
    assert!(
        error(&unknown).contains("[sweep.linear.dataset.pg20]: \"pg20\" is not in sweep.dataset"),
        "{}",
        error(&unknown)
    );
    let foreign = edited(
        "[sweep.hf_assisted]",
        "[sweep.linear.dataset.pg19]\ndepth = [3]\n\n[sweep.hf_assisted]",
    );
    assert!(error(&foreign).contains("unknown key \"depth\""));
}

#[test]
fn prompt_caps_by_dataset_and_as_an_axis() {
    let text = edited(
        "max_chars = 800",
        "max_chars = { wikitext2 = [800, 100], pg19 = 1000 }",
    );
    let m = parse(&text, Path::new(FILE)).unwrap();
    assert_eq!(m.prompts.max_chars_on("wikitext2"), [800, 100]);
    assert_eq!(m.prompts.max_chars_on("pg19"), [1000]);
    let points = grid::expand(&m).unwrap();
    let caps: Vec<usize> = points
        .iter()
        .filter(|p| p.method == Method::Ar)
        .map(|p| p.max_chars)
        .collect();
    assert_eq!(
        caps,
        [800, 100, 1000],
        "caps step inside each dataset, each with its AR"
    );
    let missing = edited("max_chars = 800", "max_chars = { wikitext2 = 800 }");
    assert!(error(&missing).contains("prompts.max_chars gives no cap for dataset \"pg19\""));
    let unknown = edited(
        "max_chars = 800",
        "max_chars = { wikitext2 = 800, pg19 = 9, pg20 = 1 }",
    );
    assert!(error(&unknown).contains("prompts.max_chars: unknown dataset \"pg20\""));
}

#[test]
fn a_parameter_two_listed_methods_share_needs_its_method() {
    let text = edited(
        "method = [\"ar\", \"linear\", \"fixed_tree\", \"hf_assisted\"]",
        "method = [\"ar\", \"linear\", \"fixed_tree\", \"dynatree\", \"hf_assisted\"]",
    )
    .replace("method = \"fixed_tree\"\ndepth = 7\n", "depth = 7\n")
    .replace("depth = 7\ntau = 0.03", "tau = 0.03");
    assert!(
        error(&text).contains("parameter \"tau\" belongs to fixed_tree and dynatree"),
        "{}",
        error(&text)
    );
}

#[test]
fn paper_manifests_name_real_pg19_on_the_hub_unpinned() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    for name in ["paper.toml", "lengths.toml"] {
        let m = load(&dir.join(name)).unwrap();
        let pg19 = &m.datasets["pg19"];
        let DatasetSource::Hub {
            hub,
            revision,
            files,
        } = &pg19.source
        else {
            panic!("{name}: pg19 is real PG-19 on the hub")
        };
        assert_eq!(hub, "emozilla/pg19", "{name}");
        assert_eq!(revision.len(), 40, "{name}: a fixed commit");
        assert_eq!(
            files.iter().collect::<Vec<_>>(),
            [(
                &"data/test-00000-of-00001-29a571947c0b5ccc.parquet".to_string(),
                &None
            )],
            "{name}: trusted on first use"
        );
        assert_eq!(pg19.stand_in, None, "{name}");
    }
}

#[test]
fn the_offline_manifest_reads_the_repository_and_marks_the_stand_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let m = load(&dir.join("tiny.toml")).unwrap();
    let DatasetSource::Path { path, sha256 } = &m.datasets["pg19"].source else {
        panic!("pg19 is the local stand-in")
    };
    assert!(path.exists(), "{} is missing", path.display());
    assert!(path.ends_with("datasets/gutenberg-austen/test-00000-of-00001.parquet"));
    assert_eq!(
        sha256.as_deref(),
        Some("sha256:65c3735e7a5f7d306904b37cec16fae96f2804d8b253d097ef9c6aa977d17fc6")
    );
    assert!(m.datasets["pg19"]
        .stand_in
        .as_deref()
        .is_some_and(|s| s.contains("Austen") && s.contains("not PG-19")));
    assert_eq!(m.datasets["wikitext2"].stand_in, None);
}

#[test]
fn unpinned_hub_files_are_a_list_and_must_be_named_once() {
    let text = edited(
        r#"files = { "wikitext-2-raw-v1/test-00000-of-00001.parquet" = "sha256:9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345" }"#,
        r#"files = ["a.parquet", "a.parquet"]"#,
    );
    assert!(
        error(&text).contains("datasets.wikitext2.files[1]: \"a.parquet\" is listed twice"),
        "{}",
        error(&text)
    );
    let text = edited(
        r#"files = { "wikitext-2-raw-v1/test-00000-of-00001.parquet" = "sha256:9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345" }"#,
        r#"files = []"#,
    );
    assert!(
        error(&text).contains("must name at least one file"),
        "{}",
        error(&text)
    );
}

#[test]
fn unknown_key_points_at_the_key() {
    let text = edited("depth = [6, 7]\nbranch", "dept = [6, 7]\nbranch");
    assert_eq!(
        error(&text),
        "experiments/x.toml:41:1: unknown key \"dept\" in [sweep.fixed_tree]; \
         expected one of depth, branch, tau, max_nodes, zip, label, dataset"
    );
    let text = edited("seed = 0", "seed = 0\nsede = 1");
    assert!(error(&text).starts_with(&format!("{FILE}:5:1: unknown key \"sede\" in [experiment]")));
    let text = edited("[prompts]", "[prompt]");
    assert!(error(&text).contains("unknown key \"prompt\" in the top level"));
    let text = edited("revision = \"main\" }   #", "revison = \"main\" }   #");
    assert_eq!(
        error(&text),
        format!(
            "{}: unknown key \"revison\" in [models.target]; expected one of hub, revision, path",
            at(&text, "target", "revison")
        )
    );
}

#[test]
fn syntax_errors_have_positions() {
    let text = edited("seed = 0", "seed = 0\nseed = 1");
    assert_eq!(error(&text), format!("{FILE}:5:1: duplicate key"));
    let text = edited("repeats = 10", "repeats = ");
    assert!(error(&text).starts_with(&format!("{FILE}:5:")));
}

#[test]
fn wrong_types_and_missing_keys() {
    let text = edited("seed = 0", "seed = \"zero\"");
    assert_eq!(
        error(&text),
        format!("{FILE}:4:8: experiment.seed: expected a non-negative integer, got \"zero\"")
    );
    let text = edited("repeats = 10\n", "");
    assert_eq!(
        error(&text),
        format!("{FILE}:1:1: missing key \"repeats\" in [experiment]")
    );
    let text = edited("[prompts]\ncount = 10\nmax_chars = 800\n", "");
    assert_eq!(error(&text), format!("{FILE}: missing table [prompts]"));
    let text = edited("stop_at_eos = false", "stop_at_eos = 0");
    assert!(error(&text).ends_with("generation.stop_at_eos: expected true or false, got 0"));
    let text = edited("k = [6, 7]", "k = 6");
    assert!(error(&text).ends_with("sweep.linear.k: expected an array, got 6"));
    let text = edited("k = [6, 7]", "k = [6, -7]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.linear.k[1]: expected a non-negative integer, got -7",
            at(&text, "k = [", "-7")
        )
    );
}

#[test]
fn out_of_range_values() {
    let text = edited("repeats = 10", "repeats = 0");
    assert_eq!(
        error(&text),
        format!("{FILE}:5:11: experiment.repeats: must be at least 1, got 0")
    );
    let text = edited("count = 10", "count = 0");
    assert!(error(&text).ends_with("prompts.count: must be at least 1, got 0"));
    let text = edited("dtype = \"f16\"", "dtype = \"f64\"");
    assert_eq!(
        error(&text),
        format!("{FILE}:11:9: models.dtype: expected one of f32, f16, bf16, got \"f64\"")
    );
    let text = edited("device = \"auto\"", "device = \"gpu\"");
    assert!(error(&text).ends_with("models.device: expected one of auto, cpu, cuda, got \"gpu\""));
    let text = edited("tau = [0.03, 0.05]", "tau = [0.03, 1.5]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.fixed_tree.tau[1]: must be within [0, 1], got 1.5",
            at(&text, "tau = [", "1.5")
        )
    );
    let text = edited("depth = [6, 7]", "depth = [0, 7]");
    assert!(error(&text).ends_with("sweep.fixed_tree.depth[0]: must be at least 1, got 0"));
    let text = edited("max_nodes = [32]", "max_nodes = [100000]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.fixed_tree.max_nodes[0]: max_nodes must be an integer in 1..=4096, got 100000",
            at(&text, "max_nodes = [", "100000")
        )
    );
    let text = edited("schedule = [\"heuristic\"]", "schedule = [\"sometimes\"]");
    assert!(error(&text).contains("unknown schedule \"sometimes\"; expected heuristic or constant"));
}

#[test]
fn empty_axis_is_an_error() {
    let text = edited("k = [6, 7]", "k = []");
    assert_eq!(
        error(&text),
        format!("{FILE}:38:5: sweep.linear.k: must not be empty; give at least one value")
    );
    let text = edited(
        "method = [\"ar\", \"linear\", \"fixed_tree\", \"hf_assisted\"]",
        "method = []",
    );
    assert!(error(&text).ends_with("sweep.method: must not be empty; give at least one value"));
}

#[test]
fn repeated_values_are_errors() {
    let text = edited("k = [6, 7]", "k = [6, 6]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.linear.k[1]: value 6 is listed twice",
            at(&text, "k = [6, ", "6]")
        )
    );
    let text = edited("\"linear\", \"fixed_tree\"", "\"linear\", \"linear\"");
    assert!(error(&text).contains("method \"linear\" is listed twice"));
}

#[test]
fn unknown_method_and_dataset() {
    let text = edited("\"hf_assisted\"]", "\"beam\"]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.method[3]: unknown method \"beam\"; expected one of ar, linear, fixed_tree, dynatree, hf_assisted",
            at(&text, "method = [", "\"beam\"")
        )
    );
    let text = edited("[\"wikitext2\", \"pg19\"]", "[\"wikitext2\", \"pg91\"]");
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.dataset[1]: unknown dataset \"pg91\"; expected one of pg19, wikitext2 \
             (the [datasets.NAME] tables)",
            at(&text, "dataset = [", "\"pg91\"")
        )
    );
    let text = edited("[\"wikitext2\", \"pg19\"]", "[\"wikitext2\"]");
    assert_eq!(
        error(&text),
        format!(
            "{FILE}:20:1: dataset \"pg19\" is defined but not in sweep.dataset; \
             add it there or remove [datasets.pg19]"
        )
    );
}

#[test]
fn method_table_without_the_method() {
    let text = edited("\"linear\", \"fixed_tree\"", "\"fixed_tree\"");
    assert_eq!(
        error(&text),
        format!(
            "{FILE}:37:1: [sweep.linear] is given but \"linear\" is not in \
             sweep.method; add it there or remove the table"
        )
    );
}

#[test]
fn speculative_methods_need_a_draft() {
    let text = edited(
        "draft = { hub = \"EleutherAI/pythia-70m\", revision = \"main\" }\n",
        "",
    );
    assert!(error(&text)
        .ends_with("sweep.method[1]: method \"linear\" needs a draft model; add models.draft"));
}

#[test]
fn bad_sha256() {
    for bad in [
        "sha256:9619",
        "9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345",
    ] {
        let text = edited(WIKI_SHA, bad);
        assert_eq!(
            error(&text),
            format!(
                "{}: datasets.wikitext2.files.\"wikitext-2-raw-v1/test-00000-of-00001.parquet\": \
                 expected \"sha256:\" followed by 64 lowercase hex digits, got \"{bad}\"",
                at(&text, "files", &format!("\"{bad}"))
            )
        );
    }
    let upper = WIKI_SHA.to_uppercase().replace("SHA256", "sha256");
    assert!(error(&edited(WIKI_SHA, &upper)).contains("64 lowercase hex digits"));
    let text = edited(
        "path = \"data/pg19.parquet\"",
        "path = \"data/pg19.parquet\"\nsha256 = \"abc\"",
    );
    assert!(error(&text).contains("datasets.pg19.sha256: expected \"sha256:\""));
}

#[test]
fn hub_or_path_exactly() {
    let text = edited(
        "path = \"data/pg19.parquet\"",
        "path = \"data/pg19.parquet\"\nhub = \"deepmind/pg19\"",
    );
    assert_eq!(
        error(&text),
        format!("{FILE}:23:8: datasets.pg19.path: give either hub or path, not both")
    );
    let text = edited("path = \"data/pg19.parquet\"\n", "");
    assert_eq!(
        error(&text),
        format!(
            "{FILE}:20:1: missing key \"hub\" or \"path\" in [datasets.pg19]: give exactly one"
        )
    );
    let text = edited(
        "path = \"data/pg19.parquet\"",
        "path = \"data/pg19.parquet\"\nrevision = \"v1\"",
    );
    assert!(error(&text).ends_with("datasets.pg19.revision: does not apply to a path dataset"));
    let text = edited("files = {", "sha256 = \"x\"\nfiles = {");
    assert!(error(&text).contains("datasets.wikitext2.sha256: does not apply to a hub dataset"));
}

#[test]
fn relative_paths_resolve_against_the_manifest() {
    let text = edited(
        "{ hub = \"EleutherAI/pythia-2.8b\", revision = \"main\" }",
        "{ path = \"../models/target\" }",
    );
    let m = parse(&text, Path::new("/exp/sub/m.toml")).unwrap();
    assert_eq!(
        m.models.target,
        ModelRef::Path {
            path: PathBuf::from("/exp/sub/../models/target")
        }
    );
    let DatasetSource::Path { path, .. } = &m.datasets["pg19"].source else {
        panic!("path dataset")
    };
    assert_eq!(path, Path::new("/exp/sub/data/pg19.parquet"));
    let text = edited(
        "path = \"data/pg19.parquet\"",
        "path = \"/abs/pg19.parquet\"",
    );
    let m = parse(&text, Path::new("m.toml")).unwrap();
    let DatasetSource::Path { path, .. } = &m.datasets["pg19"].source else {
        panic!("path dataset")
    };
    assert_eq!(path, Path::new("/abs/pg19.parquet"));
}

#[test]
fn exclude_that_matches_nothing() {
    let text = edited("depth = 7\n", "depth = 9\n");
    assert_eq!(
        error(&text),
        format!("{FILE}:52:9: sweep.exclude[0].depth: exclude matches no point: sweep.fixed_tree.depth has no value 9 (values: 6, 7)")
    );
    let text = edited("depth = 7\ntau = 0.03\n", "depth = 7\ndataset = \"pg91\"\n");
    assert!(
        error(&text).contains("exclude matches no point: dataset \"pg91\" is not in sweep.dataset")
    );
    let text = format!("{EXAMPLE}\n[[sweep.exclude]]\nk = 5\n");
    assert!(error(&text).ends_with("sweep.exclude[1].k: exclude matches no point: sweep.linear.k has no value 5 (values: 6, 7)"));
}

#[test]
fn exclude_must_use_its_method_parameters() {
    let text = edited("depth = 7\n", "k = 7\n");
    assert_eq!(
        error(&text),
        format!(
            "{FILE}:52:1: parameter \"k\" does not belong to method \"fixed_tree\"; \
             its parameters are depth, branch, tau, max_nodes"
        )
    );
    let text = edited("method = \"fixed_tree\"\n", "");
    assert!(
        parse(&text, Path::new(FILE)).is_ok(),
        "the method is inferred from depth"
    );
    let text = edited(
        "method = \"fixed_tree\"\ndepth = 7\ntau = 0.03\n",
        "method = \"ar\"\n",
    );
    assert!(error(&text).contains("the AR baseline cannot be excluded"));
    let text = edited(
        "method = \"fixed_tree\"\ndepth = 7\ntau = 0.03\n",
        "dataset = \"pg19\"\n",
    );
    assert_eq!(
        error(&text),
        format!(
            "{FILE}:50:1: an exclude needs a method or a parameter; to drop a whole dataset, \
             remove it from sweep.dataset"
        )
    );
    let text = edited("depth = 7\ntau = 0.03\n", "depht = 7\n");
    assert!(error(&text).contains(
        "unknown key \"depht\" in [[sweep.exclude]]; expected one of method, dataset, k, depth"
    ));
}

#[test]
fn zip_groups() {
    let text = edited(
        "max_nodes = [32]",
        "max_nodes = [32, 48, 64]\nzip = [[\"depth\", \"max_nodes\"]]",
    );
    assert_eq!(
        error(&text),
        format!(
            "{}: sweep.fixed_tree.max_nodes: zip group [depth, max_nodes]: depth has 2 values but \
             max_nodes has 3; zipped axes vary together and need equal lengths",
            at(&text, "max_nodes", "[32")
        )
    );
    let text = edited(
        "max_nodes = [32]",
        "max_nodes = [32, 48]\nzip = [[\"depth\", \"max_nodes\"]]",
    );
    let points = grid::expand(&parse(&text, Path::new(FILE)).unwrap()).unwrap();
    let trees: Vec<(usize, usize)> = points[..7]
        .iter()
        .filter_map(|p| match p.method {
            Method::FixedTree(t) => Some((t.depth, t.max_nodes)),
            _ => None,
        })
        .collect();
    assert_eq!(trees, [(6, 32), (6, 32), (7, 48)]);

    let text = edited(
        "max_nodes = [32]",
        "zip = [[\"depth\", \"tau\"], [\"tau\", \"branch\"]]",
    );
    assert!(error(&text).contains("axis \"tau\" is already zipped"));
    let text = edited("max_nodes = [32]", "zip = [[\"depth\"]]");
    assert!(error(&text).contains("a zip group needs at least two axes"));
    let text = edited("max_nodes = [32]", "zip = [[\"depth\", \"k\"]]");
    assert!(
        error(&text).contains("unknown axis \"k\"; expected one of depth, branch, tau, max_nodes")
    );
    let text = edited(
        "max_nodes = [32]",
        "max_nodes = [32, 48]\nzip = [[\"depth\", \"max_nodes\"]]",
    )
    .replace("depth = 7\n", "depth = 7\nmax_nodes = 32\n");
    assert!(error(&text).contains(
        "exclude matches no point: no row of zip group [depth, max_nodes] has depth = 7 and max_nodes = 32"
    ));
    let text = edited("depth = [6, 7]", "depth = [6, 6]").replace(
        "max_nodes = [32]",
        "max_nodes = [32, 32]\nzip = [[\"depth\", \"max_nodes\"]]",
    );
    assert!(error(&text).contains("row 2 repeats an earlier row"));
    let text = edited("depth = [6, 7]", "depth = [6, 6]")
        .replace(
            "max_nodes = [32]",
            "max_nodes = [32, 48]\nzip = [[\"depth\", \"max_nodes\"]]",
        )
        .replace("depth = 7\n", "depth = 6\n");
    assert_eq!(
        grid::expand(&parse(&text, Path::new(FILE)).unwrap())
            .unwrap()
            .len(),
        2 * (1 + 2 + 2 + 1)
    );
}

#[test]
fn schedules_and_hf_defaults() {
    let text = edited(
        "schedule = [\"heuristic\"]",
        "schedule = [\"constant\", \"heuristic\"]\nconfidence_threshold = [0, 0.4]",
    );
    let points = grid::expand(&parse(&text, Path::new(FILE)).unwrap()).unwrap();
    let hf: Vec<&Method> = points[..10]
        .iter()
        .map(|p| &p.method)
        .filter(|m| m.name() == "hf_assisted")
        .collect();
    assert_eq!(hf.len(), 4);
    assert_eq!(
        *hf[1],
        Method::HfAssisted {
            num_assistant_tokens: 5,
            schedule: Schedule::Constant,
            confidence_threshold: 0.4
        }
    );
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Path::new("experiments/nope.toml")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("experiments/nope.toml: cannot read the manifest: "));
    assert_eq!(err.location().line_col, None);
}

#[test]
fn exclude_method_must_be_listed() {
    let text = format!("{EXAMPLE}\n[[sweep.exclude]]\nmethod = \"beam\"\n");
    assert!(error(&text).contains("sweep.exclude[1].method: unknown method \"beam\""));
    let text = edited("\"fixed_tree\", \"hf", "\"hf").replace(
        "[sweep.fixed_tree]\ndepth = [6, 7]\nbranch = [2]\ntau = [0.03, 0.05]\nmax_nodes = [32]\n",
        "",
    );
    assert_eq!(
        error(&text),
        format!(
            "{}: exclude names method \"fixed_tree\", which is not in sweep.method",
            at(&text, "[[sweep.exclude]]", "\"fixed_tree\"")
        )
    );
}

#[test]
fn errors_stay_small() {
    // Other stages wrap ManifestError in their own error enums.
    assert!(std::mem::size_of::<ManifestError>() <= 96);
}
