//! Inputs a careful user can get wrong: every file that shapes a run is in its identity, a draft
//! with another vocabulary is refused, impossible sizes and filters are refused before any work.

mod common;

use std::path::{Path, PathBuf};

use common::{dynatree, failed, fixture_dir, ok, output, plan_ids, wikitext_validation_toml};

/// A copy of a fixture model (weights hard-linked where possible) that a test may edit.
fn model_copy(which: &str, to: &Path) -> PathBuf {
    let dir = to.join(which);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_dir().join(which).join(file), dir.join(file)).unwrap();
    }
    dir
}

/// The tokenizer at `path` with the ids of two tokens swapped: same size, other numbers.
fn swap_two_ids(path: &Path) {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    let mut tokens: Vec<(String, u64)> = vocab
        .iter()
        .map(|(t, id)| (t.clone(), id.as_u64().unwrap()))
        .collect();
    tokens.sort_by_key(|(_, id)| *id);
    let (a, b) = (&tokens[300], &tokens[301]);
    vocab.insert(a.0.clone(), b.1.into());
    vocab.insert(b.0.clone(), a.1.into());
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}

fn manifest(dir: &Path, target: &Path, draft: &Path) -> PathBuf {
    let text = format!(
        "[experiment]\nname = \"h\"\nrepeats = 1\nwarmup = 0\n[models]\ntarget = {{ path = \"{}\" }}\ndraft = {{ path = \"{}\" }}\ndtype = \"f32\"\ndevice = \"cpu\"\n{}[prompts]\ncount = 1\nmax_chars = 100\n[generation]\nmax_new_tokens = 4\n[sweep]\ndataset = [\"wikitext2\"]\nmethod = [\"ar\", \"linear\"]\n",
        target.display(),
        draft.display(),
        wikitext_validation_toml()
    );
    common::write_manifest(dir, "h.toml", &text)
}

fn ids(manifest: &Path, dir: &Path) -> Vec<String> {
    let mut plan = dynatree();
    plan.args(["plan", manifest.to_str().unwrap(), "--artifacts"])
        .arg(dir.join("artifacts"));
    plan_ids(plan)
}

#[test]
fn the_tokenizer_is_part_of_every_run_id() {
    let tmp = tempfile::tempdir().unwrap();
    let target = model_copy("target", tmp.path());
    let draft = fixture_dir().join("draft");
    let m = manifest(tmp.path(), &target, &draft);
    let before = ids(&m, tmp.path());
    swap_two_ids(&target.join("tokenizer.json"));
    let swapped = ids(&m, tmp.path());
    assert_eq!(before.len(), swapped.len());
    assert!(
        before.iter().zip(&swapped).all(|(a, b)| a != b),
        "a changed tokenizer changes every id"
    );
    std::fs::remove_file(target.join("tokenizer.json")).unwrap();
    let removed = ids(&m, tmp.path());
    assert!(removed
        .iter()
        .all(|id| !before.contains(id) && !swapped.contains(id)));
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let draft = model_copy("draft", tmp.path());
    swap_two_ids(&draft.join("tokenizer.json"));
    let out = failed(output(dynatree().args([
        "generate",
        "--target",
        fixture_dir().join("target").to_str().unwrap(),
        "--draft",
        draft.to_str().unwrap(),
        "--method",
        "linear",
        "--prompt-ids",
        "5,6",
        "--max-new-tokens",
        "4",
    ])));
    assert!(
        out.contains("the draft's tokenizer differs from") && out.contains("must share"),
        "{out}"
    );
}

#[test]
fn impossible_sizes_are_refused_before_any_work() {
    let generate = |extra: &[&str]| {
        let target = fixture_dir().join("target");
        let draft = fixture_dir().join("draft");
        let mut cmd = dynatree();
        cmd.args(["generate", "--target", target.to_str().unwrap()])
            .args(["--draft", draft.to_str().unwrap(), "--prompt-ids", "5,6"])
            .args(extra);
        failed(output(&mut cmd))
    };
    let long = generate(&["--method", "fixed_tree", "--max-new-tokens", "2040"]);
    assert!(
        long.contains("a prompt of 2 tokens + 2040 new tokens + 7 drafted beyond them needs 2049 positions, but the model has max_position_embeddings = 2048"),
        "{long}"
    );
    let wide = generate(&[
        "--method",
        "fixed_tree",
        "-p",
        "max_nodes=100000",
        "--max-new-tokens",
        "4",
    ]);
    assert!(
        wide.contains("max_nodes must be an integer in 1..=4096, got 100000"),
        "{wide}"
    );
    let deep = generate(&[
        "--method",
        "dynatree",
        "-p",
        "max_depth=3000",
        "--max-new-tokens",
        "4",
    ]);
    assert!(
        deep.contains("max_depth must be an integer in 1..=64"),
        "{deep}"
    );
}

/// Without loading any model: the configs alone say that 2048 new tokens (+ 1 prompt token)
/// cannot fit a context of 2048, for AR as for the drafting methods.
#[test]
fn check_and_plan_refuse_lengths_beyond_the_context() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = fixture_dir();
    let m = manifest(tmp.path(), &fixture.join("target"), &fixture.join("draft"));
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace("max_new_tokens = 4", "max_new_tokens = [4, 2048]"),
    )
    .unwrap();
    let path = m.to_str().unwrap();
    let check = failed(output(dynatree().args(["check", path])));
    assert!(
        check.contains("run ar max_new_tokens=2048 cannot fit")
            && check.contains("a prompt of 1 token + 2048 new tokens + 0 drafted beyond them needs 2049 positions, but the model has max_position_embeddings = 2048"),
        "{check}"
    );
    let artifacts = tmp.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let plan = failed(output(
        dynatree()
            .args(["plan", path, "--artifacts"])
            .arg(&artifacts),
    ));
    assert!(plan.contains("max_new_tokens=2048 cannot fit"), "{plan}");
    // The longest that fits passes.
    std::fs::write(
        &m,
        text.replace("max_new_tokens = 4", "max_new_tokens = 2047"),
    )
    .unwrap();
    ok(output(dynatree().args(["check", path])));
}

#[test]
fn an_only_filter_that_selects_nothing_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(
        tmp.path(),
        &fixture_dir().join("target"),
        &fixture_dir().join("draft"),
    );
    let run = |only: &str| {
        output(
            dynatree()
                .args(["run", m.to_str().unwrap(), "--only", only, "--artifacts"])
                .arg(tmp.path().join("artifacts")),
        )
    };
    let typo = failed(run("method=linaer"));
    assert!(
        typo.contains(
            "\"method=linaer\" matches none of the 2 planned runs (method takes ar, linear)"
        ),
        "{typo}"
    );
    let key = failed(run("kk=4"));
    assert!(
        key.contains("unknown key \"kk\"; expected one of dataset, method"),
        "{key}"
    );
    let word = failed(run("beam"));
    assert!(
        word.contains("methods: ar, linear; datasets: wikitext2"),
        "{word}"
    );
    // Numbers are listed in numeric order.
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, format!("{text}[sweep.linear]\nk = [10, 2, 6]\n")).unwrap();
    let k = failed(run("k=7"));
    assert!(k.contains("(k takes 2, 6, 10)"), "{k}");
    ok(run("method=linear,k=6"));
}

#[test]
fn read_only_commands_never_create_a_misspelt_artifacts_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(
        tmp.path(),
        &fixture_dir().join("target"),
        &fixture_dir().join("draft"),
    );
    let missing = tmp.path().join("artefacts");
    let m = m.to_str().unwrap();
    let dir = missing.to_str().unwrap();
    for args in [
        vec!["verify", "--artifacts", dir],
        vec!["status", m, "--artifacts", dir],
        vec!["aggregate", "--artifacts", dir],
        vec!["why", "abc", "def", "--artifacts", dir],
    ] {
        let out = failed(output(dynatree().args(&args)));
        assert!(out.contains("artefacts does not exist"), "{args:?}: {out}");
        assert!(!missing.exists(), "{args:?} created {dir}");
    }
    ok(output(dynatree().args(["plan", m, "--artifacts", dir])));
    assert!(!missing.exists(), "plan created {dir}");
}

#[test]
fn labels_that_make_one_command_name_fail_check() {
    let tmp = tempfile::tempdir().unwrap();
    let first = common::dataset_toml(
        "a",
        "PG-19",
        "wikitext",
        common::WIKI_VALIDATION,
        common::WIKI_VALIDATION_SHA256,
    );
    let second = common::dataset_toml("b", "PG 19", "pg19", common::AUSTEN, common::AUSTEN_SHA256);
    let text = format!(
        "[experiment]\nname = \"h\"\nrepeats = 1\nwarmup = 0\n{}{first}{second}[prompts]\ncount = 1\nmax_chars = 100\n[generation]\nmax_new_tokens = 2\n[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"ar\"]\n",
        common::models_toml()
    );
    let m = common::write_manifest(tmp.path(), "c.toml", &text);
    let out = failed(output(dynatree().args(["check", m.to_str().unwrap()])));
    assert!(
        out.contains("datasets labelled \"PG-19\" and \"PG 19\" would both be"),
        "{out}"
    );
}

#[test]
fn causes_are_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere.toml");
    let out = failed(output(
        dynatree().args(["check", missing.to_str().unwrap()]),
    ));
    assert_eq!(out.matches("No such file or directory").count(), 1, "{out}");
    let empty = tmp.path().join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    let out = failed(output(dynatree().args([
        "generate",
        "--target",
        empty.to_str().unwrap(),
        "--method",
        "ar",
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "1",
    ])));
    assert_eq!(out.matches("config.json not found").count(), 1, "{out}");
}
