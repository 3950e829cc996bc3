//! `dynatree generate` as a researcher runs it.

mod common;

use std::process::Output;

use common::{fixture_dir, output, reference};

fn dynatree(args: &[&str]) -> Output {
    output(common::dynatree().args(args))
}

fn model(which: &str) -> String {
    fixture_dir().join(which).display().to_string()
}

fn generate_json(method_args: &[&str], prompt_ids: &str, n: usize) -> serde_json::Value {
    let (target, draft, n) = (model("target"), model("draft"), n.to_string());
    let mut args = vec![
        "generate",
        "--target",
        &target,
        "--draft",
        &draft,
        "--prompt-ids",
        prompt_ids,
    ];
    args.extend(["--max-new-tokens", &n, "--json"]);
    args.extend(method_args);
    let out = dynatree(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn json_output_has_every_field_and_ar_tokens() {
    let case = &reference().cases[0];
    let ids: Vec<String> = case.prompt_ids.iter().map(u32::to_string).collect();
    let ids = ids.join(",");
    let expected = serde_json::json!(case.target_greedy);
    for method in [
        vec!["--method", "ar"],
        vec!["--method", "linear", "-p", "k=4"],
        vec![
            "--method",
            "fixed_tree",
            "-p",
            "depth=6",
            "--param",
            "branch=2",
            "-p",
            "tau=0.03",
            "-p",
            "max_nodes=32",
        ],
        vec!["--method", "dynatree", "-p", "window=4"],
        vec!["--method", "hf_assisted", "-p", "schedule=constant"],
    ] {
        let out = generate_json(&method, &ids, case.target_greedy.len());
        assert_eq!(out["tokens"], expected, "{method:?}");
        assert_eq!(out["method"], method[1]);
        assert_eq!(out["prompt_ids"], serde_json::json!(case.prompt_ids));
        assert!(out["text"].is_string());
        let metrics = &out["metrics"];
        for key in [
            "new_tokens",
            "wall_s",
            "ttft_ms",
            "tpot_ms",
            "tokens_per_s",
            "tokens_per_round",
            "draft_acceptance",
        ] {
            assert!(metrics.get(key).is_some(), "{method:?}: metrics.{key}");
        }
        assert_eq!(metrics["new_tokens"], 48);
        let rounds = out["rounds"].as_array().unwrap();
        assert_eq!(rounds.is_empty(), method[1] == "ar");
        assert!(rounds
            .iter()
            .all(|r| r["drafted"].is_u64() && r["accepted"].is_u64() && r["committed"].is_u64()));
        let committed: u64 = rounds
            .iter()
            .map(|r| r["committed"].as_u64().unwrap())
            .sum();
        assert!(
            method[1] == "ar" || committed == 48,
            "{method:?}: committed adds up"
        );
        // Trees report each round's tree in the reference's layout; DynaTree its base depth.
        let is_tree = method[1].ends_with("tree");
        for r in rounds {
            let tree = &r["tree"];
            assert_eq!(tree.is_object(), is_tree, "{method:?}");
            if is_tree {
                let n = r["drafted"].as_u64().unwrap() as usize;
                assert_eq!(tree["tokens"].as_array().unwrap().len(), n);
                assert_eq!(tree["parents"][0], -1, "the root hangs off the prefix");
            }
            assert_eq!(r["base_depth"].is_u64(), method[1] == "dynatree");
        }
    }
}

#[test]
fn methods_lists_the_registry() {
    let out = dynatree(&["methods", "--json"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ar", "linear", "fixed_tree", "dynatree", "hf_assisted"]
    );
    let dynatree = &lines[3]["params"];
    let default_of = |name: &str| {
        dynatree
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["default"].clone())
    };
    assert_eq!(default_of("max_depth"), Some(serde_json::json!(8)));
    assert_eq!(default_of("rho_deep"), Some(serde_json::json!(0.5)));
}

#[test]
fn text_prompt_prints_text_and_stats() {
    let (target, draft) = (model("target"), model("draft"));
    let out = dynatree(&[
        "generate",
        "--target",
        &target,
        "--draft",
        &draft,
        "--method",
        "dynatree",
        "--prompt",
        "The history of the city",
        "--max-new-tokens",
        "12",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    let stats = String::from_utf8_lossy(&out.stderr);
    assert!(
        stats.contains("12 tokens") && stats.contains("tokens/s") && stats.contains("acceptance"),
        "{stats}"
    );
}

#[test]
#[cfg(not(feature = "cuda"))]
fn cuda_without_the_feature_says_how_to_get_it() {
    let target = model("target");
    let out = dynatree(&[
        "generate",
        "--target",
        &target,
        "--method",
        "ar",
        "--prompt-ids",
        "5",
        "--max-new-tokens",
        "1",
        "--device",
        "cuda",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features cuda"));
}

#[test]
fn bad_invocations_explain_themselves() {
    let target = model("target");
    let base = [
        "generate",
        "--target",
        target.as_str(),
        "--prompt-ids",
        "5,6,7",
        "--max-new-tokens",
        "4",
    ];
    let cases: [(&[&str], &str); 10] = [
        (
            &["--method", "beam"],
            "unknown method \"beam\"; expected one of ar, linear, fixed_tree, dynatree",
        ),
        (
            &["--method", "fixed_tree", "-p", "k=3"],
            "method fixed_tree has no parameter \"k\"; its parameters are depth, branch",
        ),
        (
            &["--method", "dynatree", "-p", "b_min=4"],
            "needs b_min <= b_mid <= b_max",
        ),
        (
            &["--method", "ar", "-p", "k=3"],
            "method ar takes no parameters, got \"k\"",
        ),
        (&["--method", "linear"], "needs --draft"),
        (
            &[
                "--method", "dynatree", "--draft", "nowhere", "-p", "tau=0.1",
            ],
            "neither an existing directory nor a hub id",
        ),
        (&["--method", "ar", "--dtype", "f8"], "unknown dtype"),
        (
            &["--method", "linear", "-p", "k=0", "--draft", "x/y"],
            "k must be an integer in 1..=64, got 0",
        ),
        (
            &["--method", "ar", "--device", "tpu"],
            "unknown device \"tpu\"",
        ),
        (
            &["--method", "ar", "--max-new-tokens", "0"],
            "cannot be used multiple times",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = base.to_vec();
        args.extend(extra);
        let out = dynatree(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} should fail");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let out = dynatree(&[
        "generate",
        "--target",
        &target,
        "--method",
        "ar",
        "--prompt-ids",
        "5,99999",
        "--max-new-tokens",
        "2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("prompt token 99999 is outside the model's vocabulary of 2048"),
        "{stderr}"
    );
}

/// `device` says what a manifest's device gets here; in a build without CUDA, `cuda` is an
/// error that names the fix and `auto` the CPU with a notice.
#[cfg(not(feature = "cuda"))]
#[test]
fn device_reports_the_cpu_and_refuses_cuda_without_the_feature() {
    let auto = dynatree(&["device"]);
    assert!(auto.status.success());
    let text = common::text(&auto);
    assert!(
        text.contains("device auto:") && text.contains("running on the CPU"),
        "{text}"
    );
    assert!(text.contains("memory: host heap high-water mark"), "{text}");
    let cuda = dynatree(&["device", "--device", "cuda"]);
    assert!(!cuda.status.success());
    let text = common::text(&cuda);
    assert!(text.contains("`make build-cuda`"), "{text}");
}
