//! Sweeps end to end on the fixture pair and real WikiText-2 text: planning, running, resuming,
//! verifying, crash safety and concurrent runners.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{models_toml, ok, output, stdout, wikitext_validation_toml};

const RUNS: usize = 5;

/// A small sweep: AR, linear k=2 and 4, a tree, HF assisted; 2 prompts, 2 repeats, 10 tokens.
fn write_manifest(dir: &Path) -> PathBuf {
    write_manifest_with_tokens(dir, 10)
}

fn write_manifest_with_tokens(dir: &Path, tokens: usize) -> PathBuf {
    let text = format!(
        r#"
[experiment]
name = "e2e"
description = "end-to-end test"
seed = 3
repeats = 2
warmup = 1

{models}
{wikitext}
[prompts]
count = 2
max_chars = 200

[generation]
max_new_tokens = {tokens}
stop_at_eos = false

[sweep]
dataset = ["wikitext2"]
method = ["ar", "linear", "fixed_tree", "hf_assisted"]

[sweep.linear]
k = [2, 4]

[sweep.fixed_tree]
depth = [3]
branch = [2]
tau = [0.0]
max_nodes = [8]
"#,
        models = models_toml(),
        wikitext = wikitext_validation_toml(),
    );
    common::write_manifest(dir, "e2e.toml", &text)
}

/// The binary with this test's artifacts and an empty hub cache.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = common::dynatree();
    cmd.args(args);
    if args[0] != "check" {
        cmd.arg("--artifacts").arg(dir.join("artifacts"));
    }
    cmd.env("HF_HUB_CACHE", dir.join("hub"));
    cmd
}

fn dynatree(dir: &Path, args: &[&str]) -> Output {
    output(&mut command(dir, args))
}

fn results(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    common::results(&dir.join("artifacts"))
}

fn plan_ids(dir: &Path, manifest: &str) -> Vec<String> {
    common::plan_ids(command(dir, &["plan", manifest]))
}

#[test]
fn a_sweep_runs_resumes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest(dir);
    let m = manifest.to_str().unwrap();
    assert!(ok(dynatree(dir, &["check", m])).contains(&format!("{RUNS} runs")));
    let ids = plan_ids(dir, m);
    assert_eq!(ids.len(), RUNS);
    assert_eq!(ids, plan_ids(dir, m), "plan is stable");

    ok(dynatree(dir, &["run", m]));
    let stored = results(dir);
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted
    });
    for (id, result) in &stored {
        assert_eq!(result["lossless"], true, "{id}");
        assert_eq!(
            result["records"].as_array().unwrap().len(),
            4,
            "2 prompts x 2 repeats"
        );
        let summary = &result["summary"];
        assert!(summary["throughput_tokens_per_s"]["mean"].as_f64().unwrap() > 0.0);
        let memory = &result["memory"];
        assert_eq!(memory["kind"], "host_heap", "{id}");
        let bytes = |key: &str| memory[key].as_u64().unwrap();
        assert!(
            bytes("peak_bytes")
                > bytes("weights_target_bytes")
                    + bytes("weights_draft_bytes")
                    + bytes("kv_target_bytes")
                    + bytes("kv_draft_bytes"),
            "{id}: the peak holds the weights and caches: {memory}"
        );
        assert!(bytes("weights_draft_bytes") > 0, "the draft stays loaded");
        assert_eq!(result["lossless_check"]["generations_checked"], 4);
        assert!(result["provenance"]["start_time"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        assert_eq!(result["content_sha256"].as_str().unwrap().len(), 64);
    }
    let ar = &stored[&ids[0]];
    assert_eq!(ar["config"]["method"], "ar");
    assert!(ar["summary"]["draft_acceptance"].is_null());
    assert_eq!(ar["memory"]["kv_draft_bytes"], 0, "AR makes no draft cache");
    assert_eq!(ar["lossless_check"]["reference"], "ar_untimed");

    assert!(ok(dynatree(dir, &["run", m])).contains("nothing to do"));
    let status = ok(dynatree(dir, &["status", m]));
    assert!(
        status.contains(&format!("{RUNS} done, 0 failed, 0 tampered, 0 pending")),
        "{status}"
    );
    assert!(ok(dynatree(dir, &["verify"])).contains(&format!("{RUNS} results verify, 0 problems")));

    let why = ok(dynatree(dir, &["why", &ids[1][..10], &ids[2][..10]]));
    assert!(why.contains("params.k: 2 -> 4"), "{why}");

    // A tampered result is reported, then run again.
    let victim = dir.join("artifacts/runs").join(format!("{}.json", ids[3]));
    let text = std::fs::read_to_string(&victim).unwrap();
    std::fs::write(
        &victim,
        text.replacen("\"lossless\":true", "\"lossless\":false", 1),
    )
    .unwrap();
    let out = dynatree(dir, &["verify"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains(&ids[3]), "{}", stdout(&out));
    let out = dynatree(dir, &["aggregate"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("skipped ") && stderr.contains(&ids[3]),
        "{stderr}"
    );
    // Shown as tampered (not pending), and the exit status says something is wrong.
    let out = dynatree(dir, &["status", m]);
    assert!(!out.status.success(), "status exits non-zero");
    let status = stdout(&out);
    assert!(status.contains("1 tampered, 0 pending"), "{status}");
    assert!(
        status.contains(&format!("tampered {}", &ids[3][..12])),
        "{status}"
    );
    ok(dynatree(dir, &["run", m]));
    assert!(ok(dynatree(dir, &["verify"])).contains("0 problems"));
}

fn spawn_run(dir: &Path, manifest: &str) -> Child {
    command(dir, &["run", manifest])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runner starts")
}

#[test]
fn kill_dash_nine_at_random_moments_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest(dir);
    let m = manifest.to_str().unwrap();
    let ids = plan_ids(dir, m);
    let mut state = 0x9e37_79b9u64;
    for _ in 0..6 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut child = spawn_run(dir, m);
        std::thread::sleep(Duration::from_millis(150 + (state >> 33) % 900));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever was written so far verifies.
        let out = ok(dynatree(dir, &["verify"]));
        assert!(out.contains(" 0 problems"), "{out}");
    }
    ok(dynatree(dir, &["run", m]));
    let stored = results(dir);
    assert_eq!(stored.len(), RUNS);
    assert!(ids.iter().all(|id| stored.contains_key(id)));
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("artifacts/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(ok(dynatree(dir, &["verify"])).contains(&format!("{RUNS} results verify, 0 problems")));
}

#[test]
fn two_runners_at_once_run_every_id_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest(dir);
    let m = manifest.to_str().unwrap();
    let ids = plan_ids(dir, m);
    let runners = [spawn_run(dir, m), spawn_run(dir, m)];
    let outputs: Vec<String> = runners
        .into_iter()
        .map(|c| stdout(&c.wait_with_output().unwrap()))
        .collect();
    let done: Vec<&str> = outputs
        .iter()
        .flat_map(|o| o.lines())
        .filter_map(|l| l.strip_prefix("done "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut unique = done.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(done.len(), unique.len(), "an id ran twice: {outputs:?}");
    assert_eq!(done.len(), RUNS, "{outputs:?}");
    assert!(ids.iter().all(|id| done.contains(&&id[..12])));
    assert!(ok(dynatree(dir, &["verify"])).contains(&format!("{RUNS} results verify")));
}

#[test]
fn manifest_errors_point_at_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest(dir);
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("depth = [3]", "dept = [3]");
    std::fs::write(&manifest, text).unwrap();
    let out = dynatree(dir, &["check", manifest.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("e2e.toml:") && err.contains("dept"), "{err}");
}

#[test]
fn run_ids_follow_exactly_the_inputs_that_matter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest(dir);
    let original = std::fs::read_to_string(&manifest).unwrap();
    let ids_with = |text: &str| {
        std::fs::write(&manifest, text).unwrap();
        plan_ids(dir, manifest.to_str().unwrap())
    };
    let base = ids_with(&original);
    // Presentation only: description, comments, key order within a table.
    let cosmetic = original
        .replace(
            "description = \"end-to-end test\"",
            "description = \"another text\"\n# a comment",
        )
        .replace("count = 2\nmax_chars = 200", "max_chars = 200\ncount = 2");
    assert_eq!(ids_with(&cosmetic), base);
    for (from, to) in [
        ("max_new_tokens = 10", "max_new_tokens = 11"),
        ("seed = 3", "seed = 4"),
        ("repeats = 2", "repeats = 3"),
        ("warmup = 1", "warmup = 2"),
        ("max_chars = 200", "max_chars = 201"),
        ("dtype = \"f32\"", "dtype = \"bf16\""),
        ("stop_at_eos = false", "stop_at_eos = true"),
    ] {
        let changed = ids_with(&original.replace(from, to));
        assert!(
            changed.iter().all(|id| !base.contains(id)),
            "{to} must change every id"
        );
    }
    // A parameter changes only the runs that have it.
    let changed = ids_with(&original.replace("k = [2, 4]", "k = [2, 5]"));
    let same: Vec<bool> = changed.iter().map(|id| base.contains(id)).collect();
    assert_eq!(same, vec![true, true, false, true, true]);
}

#[test]
fn shards_split_a_sweep_and_ctrl_c_keeps_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest_with_tokens(dir, 120);
    let m = manifest.to_str().unwrap();
    // Ctrl-C once the first run is done: exit 130, nothing partial, what finished verifies.
    let mut child = command(dir, &["run", m])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runner starts");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("done "), "{first}");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Acknowledged at once, not only when the generation ends.
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("interrupt: finishing the current generation"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(dynatree(dir, &["verify"])).contains(" 0 problems"));
    assert!(results(dir).len() < RUNS);

    let first = ok(dynatree(dir, &["run", m, "--shard", "0/2"]));
    let second = ok(dynatree(dir, &["run", m, "--shard", "1/2"]));
    assert!(!first.is_empty() && !second.is_empty());
    assert_eq!(results(dir).len(), RUNS);
    let out = dynatree(dir, &["run", m, "--shard", "2/2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("need 0 <= I < N"));
}

#[test]
fn two_forced_runners_redo_each_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = write_manifest_with_tokens(dir, 40);
    let m = manifest.to_str().unwrap();
    ok(dynatree(dir, &["run", m]));
    let spawn = || {
        command(dir, &["run", m, "--force"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("runner starts")
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let redone: usize = outputs
        .iter()
        .map(|o| stdout(o).lines().filter(|l| l.starts_with("done ")).count())
        .sum();
    assert_eq!(
        redone, RUNS,
        "each forced run is redone by one runner, not both"
    );
    assert!(ok(dynatree(dir, &["verify"])).contains(&format!("{RUNS} results verify")));
}
