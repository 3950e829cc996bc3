//! Parity with Hugging Face transformers on the trained tiny GPT-NeoX pair.

mod common;

use common::{chain, last_logits, max_abs_diff, pair, reference, run};
use dynatree::decode::{self, Method, Param, Schedule, TreeParams};

const TOLERANCE: f32 = 1e-4;

#[test]
fn last_position_logits_match_transformers() {
    let p = pair();
    for (i, case) in reference().cases.iter().enumerate() {
        let target = max_abs_diff(
            &last_logits(&p.target, &case.prompt_ids),
            &case.target_last_logits,
        );
        let draft = max_abs_diff(
            &last_logits(&p.draft, &case.prompt_ids),
            &case.draft_last_logits,
        );
        assert!(
            target <= TOLERANCE,
            "case {i}: target logits differ by {target}"
        );
        assert!(
            draft <= TOLERANCE,
            "case {i}: draft logits differ by {draft}"
        );
    }
}

#[test]
fn one_tree_pass_matches_per_path_causal_logits() {
    let target = &pair().target;
    for (i, case) in reference().cases.iter().enumerate() {
        let prompt = &case.prompt_ids;
        let mut cache = target
            .new_cache(prompt.len() + case.tree.tokens.len())
            .unwrap();
        target
            .forward(prompt, &chain(prompt.len()), &mut cache, prompt.len() - 1)
            .unwrap();
        cache.commit_all().unwrap();
        let logits = target
            .forward(&case.tree.tokens, &case.tree.parents, &mut cache, 0)
            .unwrap();
        let rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        for (node, (ours, theirs)) in rows
            .iter()
            .zip(&case.tree.target_logits_per_node)
            .enumerate()
        {
            let diff = max_abs_diff(ours, theirs);
            assert!(
                diff <= TOLERANCE,
                "case {i} node {node}: logits differ by {diff}"
            );
        }
    }
}

#[test]
fn ar_matches_transformers_greedy_on_target_and_draft() {
    let p = pair();
    for (i, case) in reference().cases.iter().enumerate() {
        let n = case.target_greedy.len();
        let settings = common::settings(n);
        let target =
            decode::generate(&Method::Ar, &p.target, None, &case.prompt_ids, &settings).unwrap();
        assert_eq!(target.tokens, case.target_greedy, "case {i}: target");
        let draft =
            decode::generate(&Method::Ar, &p.draft, None, &case.prompt_ids, &settings).unwrap();
        assert_eq!(draft.tokens, case.draft_greedy, "case {i}: draft");
        assert_eq!(target.target_passes, n);
        assert!(target.rounds.is_empty());
    }
}

#[test]
fn hf_assisted_matches_transformers_round_by_round() {
    for (i, case) in reference().cases.iter().enumerate() {
        for (schedule, expected) in [
            (Schedule::Heuristic, &case.assisted_heuristic),
            (Schedule::Constant, &case.assisted_constant),
        ] {
            let method = Method::HfAssisted {
                num_assistant_tokens: 5,
                schedule,
                confidence_threshold: 0.0,
            };
            let g = run(&method, &case.prompt_ids, expected.tokens.len());
            assert_eq!(g.tokens, expected.tokens, "case {i} {schedule:?}: tokens");
            let accepted: Vec<usize> = g.rounds.iter().map(|r| r.accepted).collect();
            assert_eq!(
                accepted, expected.num_matches_per_iteration,
                "case {i} {schedule:?}: accepted per round"
            );
        }
    }
}

#[test]
fn linear_is_lossless_for_every_k() {
    for (i, case) in reference().cases.iter().enumerate() {
        for k in [1, 4, 6, 7] {
            let g = run(
                &Method::Linear { k },
                &case.prompt_ids,
                case.target_greedy.len(),
            );
            assert_eq!(g.tokens, case.target_greedy, "case {i} k={k}");
            assert!(g
                .rounds
                .iter()
                .all(|r| r.drafted <= k && r.accepted <= r.drafted));
            assert_eq!(g.rounds.len(), g.target_passes);
        }
    }
}

#[test]
fn fixed_tree_is_lossless_across_shapes() {
    let shapes = [
        (6, 2, 0.03, 32),
        (7, 2, 0.05, 32),
        (3, 3, 0.0, 16),
        (4, 4, 0.01, 8),
        (8, 2, 0.1, 64),
        (2, 1, 0.0, 2),
    ];
    for (i, case) in reference().cases.iter().enumerate() {
        for (depth, branch, tau, max_nodes) in shapes {
            let method = Method::FixedTree(TreeParams {
                depth,
                branch,
                tau,
                max_nodes,
            });
            let g = run(&method, &case.prompt_ids, case.target_greedy.len());
            assert_eq!(g.tokens, case.target_greedy, "case {i} {method:?}");
            assert!(g
                .rounds
                .iter()
                .all(|r| r.drafted <= max_nodes && r.accepted <= depth + 1));
        }
    }
}

#[test]
fn dynatree_is_lossless_with_every_component_on_or_off() {
    let spec = dynatree::decode::method_spec("dynatree").unwrap();
    for (i, case) in reference().cases.iter().enumerate() {
        for breadth in [true, false] {
            for depth in [true, false] {
                for window in [0, 3, 10] {
                    let method = spec
                        .build_with(&[
                            ("dynamic_breadth", Param::Switch(breadth)),
                            ("dynamic_depth", Param::Switch(depth)),
                            ("window", Param::Count(window)),
                            ("max_nodes", Param::Count(16)),
                            ("target_acceptance", Param::Probability(0.2)),
                        ])
                        .unwrap();
                    let g = run(&method, &case.prompt_ids, case.target_greedy.len());
                    assert_eq!(
                        g.tokens,
                        case.target_greedy,
                        "case {i} {}",
                        method.describe()
                    );
                    assert!(g
                        .rounds
                        .iter()
                        .all(|r| r.drafted <= 16 && r.base_depth.is_some()));
                }
            }
        }
    }
}

#[test]
fn pythia_tokenizer_encodes_hello_world() {
    let path = common::repo("tests/fixtures/pythia-tokenizer/tokenizer.json");
    let tokenizer = dynatree::model::TextTokenizer::from_file(&path).unwrap();
    assert_eq!(
        tokenizer.encode("Hello world!").unwrap(),
        vec![12092, 1533, 2]
    );
    assert_eq!(tokenizer.decode(&[12092, 1533, 2]).unwrap(), "Hello world!");
}

#[test]
fn stop_at_eos_ends_every_method_at_the_same_token() {
    let case = &reference().cases[0];
    let eos = case.target_greedy[5];
    let first = case.target_greedy.iter().position(|&t| t == eos).unwrap();
    let settings = dynatree::decode::GenerationSettings {
        stop_at_eos: true,
        eos_token_id: Some(eos),
        ..common::settings(case.target_greedy.len())
    };
    let p = pair();
    let methods = [
        Method::Ar,
        Method::Linear { k: 6 },
        Method::FixedTree(TreeParams {
            depth: 6,
            branch: 2,
            tau: 0.03,
            max_nodes: 32,
        }),
        Method::hf_assisted_default(),
    ];
    for method in methods {
        let g = decode::generate(
            &method,
            &p.target,
            Some(&p.draft),
            &case.prompt_ids,
            &settings,
        )
        .unwrap();
        assert_eq!(g.tokens, case.target_greedy[..=first], "{method:?}");
    }
}
