//! The authors' tree policies, round by round: our `fixed_tree` and `dynatree` must draft the
//! same trees, accept the same nodes and commit the same tokens as the reference computed with
//! transformers (`tests/fixtures/tiny-neox/tree_reference.json`, whose `policies` field states
//! the rules).

mod common;

use std::sync::OnceLock;

use dynatree::decode::{self, Method, Param, Round};
use serde::Deserialize;

use common::models::{pair, reference, settings};
use common::paths::fixture_dir;

#[derive(Deserialize)]
struct TreeReference {
    tokenizer_vocab: usize,
    new_tokens: usize,
    cases: Vec<TreeCase>,
}

#[derive(Deserialize)]
struct TreeCase {
    prompt_ids: Vec<u32>,
    runs: Vec<TreeRun>,
}

#[derive(Deserialize)]
struct TreeRun {
    method: String,
    params: serde_json::Map<String, serde_json::Value>,
    tokens: Vec<u32>,
    rounds: Vec<RefRound>,
}

#[derive(Deserialize)]
struct RefRound {
    tokens: Vec<u32>,
    parents: Vec<i64>,
    accepted: usize,
    committed: usize,
    base_depth: Option<usize>,
}

fn tree_reference() -> &'static TreeReference {
    static REF: OnceLock<TreeReference> = OnceLock::new();
    REF.get_or_init(|| {
        let path = fixture_dir().join("tree_reference.json");
        let text = std::fs::read_to_string(&path).expect("tree_reference.json");
        serde_json::from_str(&text).expect("tree_reference.json parses")
    })
}

/// The reference's parameters as our method, through the registry (so its names are ours).
fn method_of(run: &TreeRun) -> Method {
    let spec = decode::method_spec(&run.method).expect("a registered method");
    let given: Vec<(&str, Param)> = run
        .params
        .iter()
        .map(|(name, value)| {
            let p = spec
                .param(name)
                .unwrap_or_else(|| panic!("{}: no {name}", run.method));
            let param = Param::from_json(value, p.kind).expect("a value of the parameter's kind");
            (p.name, param)
        })
        .collect();
    spec.build_with(&given).expect("valid reference parameters")
}

fn traced(method: &Method, prompt: &[u32], new_tokens: usize) -> decode::Generation {
    let p = pair();
    let settings = decode::GenerationSettings {
        trace_trees: true,
        ..settings(new_tokens)
    };
    decode::generate(method, &p.target, Some(&p.draft), prompt, &settings).unwrap()
}

fn compare(what: &str, ours: &[Round], theirs: &[RefRound]) {
    for (r, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let tree = a.tree.as_ref().expect("traced");
        assert_eq!(tree.tokens, b.tokens, "{what} round {r}: drafted tokens");
        assert_eq!(tree.parents, b.parents, "{what} round {r}: parents");
        assert_eq!(a.accepted, b.accepted, "{what} round {r}: accepted");
        assert_eq!(a.committed, b.committed, "{what} round {r}: committed");
        assert_eq!(a.base_depth, b.base_depth, "{what} round {r}: base depth");
    }
    assert_eq!(ours.len(), theirs.len(), "{what}: rounds");
}

#[test]
fn the_reference_covers_six_configurations_on_the_fixture_prompts() {
    let r = tree_reference();
    assert_eq!(r.tokenizer_vocab, settings(1).vocab_limit);
    assert_eq!(r.cases.len(), reference().cases.len());
    for case in &r.cases {
        let methods: Vec<&str> = case.runs.iter().map(|run| run.method.as_str()).collect();
        assert_eq!(methods.iter().filter(|m| **m == "fixed_tree").count(), 3);
        assert_eq!(methods.iter().filter(|m| **m == "dynatree").count(), 3);
    }
}

#[test]
fn fixed_tree_matches_the_authors_round_by_round() {
    parity("fixed_tree");
}

#[test]
fn dynatree_matches_the_authors_round_by_round() {
    parity("dynatree");
}

fn parity(method: &str) {
    let r = tree_reference();
    for (i, case) in r.cases.iter().enumerate() {
        let expected = &reference().cases[i].target_greedy[..r.new_tokens];
        for run in case.runs.iter().filter(|run| run.method == method) {
            let m = method_of(run);
            let what = format!("case {i} {}", m.describe());
            let g = traced(&m, &case.prompt_ids, r.new_tokens);
            assert_eq!(run.tokens, expected, "{what}: the reference is AR's output");
            assert_eq!(g.tokens, expected, "{what}: lossless");
            compare(&what, &g.rounds, &run.rounds);
        }
    }
}

/// With breadth and depth switched off, DynaTree is the fixed tree of depth D0 and branching
/// Bmid; the switches really switch.
#[test]
fn dynatree_without_its_components_is_a_fixed_tree() {
    let case = &tree_reference().cases[0];
    let fixed = decode::method_spec("fixed_tree")
        .unwrap()
        .build_with(&[
            ("depth", Param::Count(4)),
            ("branch", Param::Count(2)),
            ("tau", Param::Probability(0.05)),
            ("max_nodes", Param::Count(32)),
        ])
        .unwrap();
    let plain = decode::method_spec("dynatree")
        .unwrap()
        .build_with(&[
            ("base_depth", Param::Count(4)),
            ("max_nodes", Param::Count(32)),
            ("window", Param::Count(0)),
            ("dynamic_breadth", Param::Switch(false)),
            ("dynamic_depth", Param::Switch(false)),
        ])
        .unwrap();
    let trees = |m: &Method| -> Vec<_> {
        traced(m, &case.prompt_ids, 48)
            .rounds
            .into_iter()
            .map(|r| r.tree)
            .collect()
    };
    assert_eq!(trees(&fixed), trees(&plain));
    let adaptive = Method::default_of("dynatree").unwrap();
    assert_ne!(trees(&adaptive), trees(&plain));
}
