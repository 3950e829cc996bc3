//! The results store: verification of stored results, locks across processes, and crash safety
//! of writes (a child process killed with SIGKILL in the middle of rewriting a file).

use dynatree::store::{
    parse_json, run_id, write_atomic, Problem, Store, StoreError, SCHEMA_VERSION,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// A small config; `n` makes distinct runs. Its floats include one serde_json cannot read back
/// exactly (1e-30), so a lossy reader would make the stored result look stale.
fn config(n: u64) -> Value {
    json!({
        "method": "fixed_tree",
        "params": {"depth": 6, "branch": 2, "tau": 0.03, "max_nodes": 32},
        "models": {"target": "EleutherAI/pythia-2.8b", "draft": "EleutherAI/pythia-70m"},
        "prompt": n,
        "eps": 1e-30,
    })
}

fn result(n: u64) -> (String, Value) {
    let config = config(n);
    let id = run_id(&config);
    let value = json!({
        "id": id,
        "config": config,
        "tokens": [11, 12, 13],
        "text": "marker-abcdef",
        "metrics": {"wall_s": 0.1 + 0.2, "tokens_per_s": 123.456789, "acceptance_rate": null},
    });
    (id, value)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// Stores result `n` and returns its id.
fn put(store: &Store, n: u64) -> String {
    let (id, value) = result(n);
    store.write_result(&id, value).unwrap();
    id
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn temp_files(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// The problems `verify` reports, as (file name, problem) pairs.
fn problems(store: &Store) -> Vec<(String, String)> {
    let found: Vec<Problem> = store.verify().unwrap();
    found
        .into_iter()
        .map(|p| {
            let name = p.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, p.problem)
        })
        .collect()
}

fn assert_corrupt(store: &Store, id: &str, expected: &str) {
    match store.read_result(id) {
        Err(StoreError::Corrupt { path, problems }) => {
            assert_eq!(path, store.result_path(id));
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{problems:?}"
            );
        }
        other => panic!("expected a corrupt result, got {other:?}"),
    }
    assert!(!store.is_done(id));
    assert!(!store.done_ids().unwrap().contains(id));
}

#[test]
fn write_then_read_round_trips() {
    let (_dir, store) = store();
    let (id, value) = result(1);
    assert_eq!(store.read_result(&id).unwrap(), None);
    assert!(!store.is_done(&id));
    store.write_result(&id, value.clone()).unwrap();

    let read = store.read_result(&id).unwrap().unwrap();
    assert_eq!(read["schema_version"], json!(SCHEMA_VERSION));
    assert_eq!(read["content_sha256"].as_str().unwrap().len(), 64);
    let mut stripped = read.clone();
    stripped.as_object_mut().unwrap().remove("schema_version");
    stripped.as_object_mut().unwrap().remove("content_sha256");
    assert_eq!(stripped, value);
    assert_eq!(run_id(&read["config"]), id);

    assert!(store.is_done(&id));
    let other = put(&store, 2);
    assert_eq!(
        store.done_ids().unwrap(),
        BTreeSet::from([id.clone(), other])
    );
    assert_eq!(store.verify().unwrap(), vec![]);
    assert_eq!(
        store.result_path(&id),
        store.root().join("runs").join(format!("{id}.json"))
    );
    assert!(fs::read(store.result_path(&id)).unwrap().ends_with(b"}\n"));
    assert!(temp_files(&store.root().join("runs")).is_empty());
    // Rewriting the same id is allowed and still verifies.
    store.write_result(&id, value).unwrap();
    assert!(store.is_done(&id));
}

#[test]
fn write_result_refuses_what_would_not_verify() {
    let (_dir, store) = store();
    let id = put(&store, 1);
    let before = fs::read(store.result_path(&id)).unwrap();
    let (_, good) = result(1);
    let (other_id, _) = result(2);

    let mut wrong_config = good.clone();
    wrong_config["config"] = config(2);
    let mut no_config = good.clone();
    no_config.as_object_mut().unwrap().remove("config");
    let mut wrong_id_field = good.clone();
    wrong_id_field["id"] = json!(other_id);
    for bad in [json!([1, 2]), wrong_config, no_config, wrong_id_field] {
        let err = store.write_result(&id, bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidResult { .. }), "{err}");
        assert!(
            err.to_string().contains(&id),
            "message names the file: {err}"
        );
    }
    // The stored result is untouched by the refused writes.
    assert_eq!(fs::read(store.result_path(&id)).unwrap(), before);
    assert!(store.is_done(&id));
}

#[test]
fn a_tampered_byte_is_caught() {
    let (_dir, store) = store();
    let id = put(&store, 1);
    let intact = put(&store, 2);
    let path = store.result_path(&id);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(6).position(|w| w == b"abcdef").unwrap();
    bytes[at] = b'x'; // still valid JSON: only the checksum can tell
    fs::write(&path, &bytes).unwrap();

    assert_corrupt(&store, &id, "content_sha256 mismatch");
    let found = problems(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, format!("{id}.json"));
    assert!(found[0].1.contains("content_sha256 mismatch"), "{found:?}");
    assert!(store.is_done(&intact));
    assert_eq!(store.done_ids().unwrap(), BTreeSet::from([intact]));
}

/// Writes `value` with a correct checksum at runs/<id>.json, bypassing write_result's checks.
fn plant(store: &Store, id: &str, mut value: Value) {
    value["content_sha256"] = json!(dynatree::store::content_sha256(&value));
    write_atomic(&store.result_path(id), &serde_json::to_vec(&value).unwrap()).unwrap();
}

#[test]
fn a_config_hashing_to_another_id_is_stale() {
    let (_dir, store) = store();
    let (id, mut value) = result(1);
    value["config"] = config(99);
    value["schema_version"] = json!(SCHEMA_VERSION);
    plant(&store, &id, value);

    assert_corrupt(&store, &id, "stale: config hashes to");
    let found = problems(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].1.contains(&run_id(&config(99))), "{found:?}");
}

#[test]
fn an_id_field_disagreeing_with_the_file_name_is_listed() {
    let (_dir, store) = store();
    let id = put(&store, 1);
    let (other, _) = result(2);
    fs::copy(store.result_path(&id), store.result_path(&other)).unwrap();
    assert_corrupt(&store, &other, "but the file name says");
    let found = problems(&store);
    assert_eq!(
        found.len(),
        2,
        "id field and config both disagree: {found:?}"
    );
    assert!(found
        .iter()
        .all(|(name, _)| *name == format!("{other}.json")));
    assert!(store.is_done(&id));
}

#[test]
fn another_schema_version_is_stale() {
    let (_dir, store) = store();
    let (id, mut value) = result(1);
    value["schema_version"] = json!(SCHEMA_VERSION + 1);
    plant(&store, &id, value);
    assert_corrupt(&store, &id, "schema_version");
    assert_eq!(problems(&store).len(), 1);
}

#[test]
fn a_truncated_file_is_listed() {
    let (_dir, store) = store();
    let id = put(&store, 1);
    let path = store.result_path(&id);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    assert_corrupt(&store, &id, "not valid JSON");
    let found = problems(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].1.contains("truncated"), "{found:?}");
    // An empty file too.
    fs::write(&path, b"").unwrap();
    assert_corrupt(&store, &id, "not valid JSON");
}

#[test]
fn unexpected_entries_in_runs_are_listed_and_temp_files_skipped() {
    let (dir, store) = store();
    put(&store, 1);
    let runs = dir.path().join("runs");
    fs::write(runs.join("notes.txt"), "hello").unwrap();
    fs::create_dir(runs.join("sub.json")).unwrap();
    let live_temp = format!(".x.json.tmp-{}-0", std::process::id());
    fs::write(runs.join(live_temp), "{partial").unwrap();
    let found = problems(&store);
    let listed: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(listed, ["notes.txt", "sub.json"], "{found:?}");
    assert_eq!(store.done_ids().unwrap().len(), 1);
}

#[test]
fn failures_are_recorded_and_cleared_by_success() {
    let (_dir, store) = store();
    let (id, value) = result(1);
    assert_eq!(store.read_failure(&id), None);
    store
        .write_failure(&id, &value["config"], "CUDA out of memory")
        .unwrap();
    assert_eq!(
        store.read_failure(&id).as_deref(),
        Some("CUDA out of memory")
    );
    // serde_json would read 1e-30 back one ulp off; parse_json reads it exactly.
    let record = parse_json(&fs::read(store.failure_path(&id)).unwrap()).unwrap();
    assert_eq!(record["id"], json!(id));
    assert_eq!(record["config"], value["config"]);
    let time = record["time"].as_str().unwrap();
    assert!(time.len() == 20 && time.ends_with('Z'), "{time}");

    store.write_result(&id, value.clone()).unwrap();
    assert_eq!(store.read_failure(&id), None);
    assert!(!store.failure_path(&id).exists());

    // A later failure of the same run does not touch its result.
    let before = fs::read(store.result_path(&id)).unwrap();
    store.write_failure(&id, &value["config"], "again").unwrap();
    assert_eq!(fs::read(store.result_path(&id)).unwrap(), before);
    assert!(store.is_done(&id));
    assert_eq!(store.read_failure(&id).as_deref(), Some("again"));
}

#[test]
fn garbage_in_failed_breaks_nothing() {
    let (dir, store) = store();
    let (id, value) = result(1);
    let (other, _) = result(2);
    let failed = dir.path().join("failed");
    fs::write(store.failure_path(&id), b"\x00\xff{{not json").unwrap();
    fs::write(store.failure_path(&other), b"[1, 2, 3]").unwrap();
    fs::write(failed.join("README"), b"junk").unwrap();
    fs::create_dir(failed.join("dir.json")).unwrap();

    assert_eq!(store.read_failure(&id), None);
    assert_eq!(store.read_failure(&other), None);
    assert_eq!(store.verify().unwrap(), vec![]);
    assert!(store.done_ids().unwrap().is_empty());
    let reopened = Store::open(dir.path()).unwrap();
    reopened.write_result(&id, value.clone()).unwrap();
    assert!(!store.failure_path(&id).exists());
    assert!(store.is_done(&id));
    reopened.write_failure(&other, &config(2), "boom").unwrap();
    assert_eq!(store.read_failure(&other).as_deref(), Some("boom"));
}

#[test]
fn ids_that_could_escape_are_refused() {
    let (dir, store) = store();
    let (_, value) = result(1);
    for id in ["../escape", "a/b", "", ".hidden"] {
        assert!(matches!(
            store.write_result(id, value.clone()),
            Err(StoreError::InvalidId { .. })
        ));
        assert!(store.read_result(id).is_err());
        assert!(!store.is_done(id));
        assert!(store.try_lock(id).is_err());
        assert!(store.write_failure(id, &value, "x").is_err());
        assert_eq!(store.read_failure(id), None);
    }
    assert!(!dir.path().join("escape.json").exists());
}

#[test]
fn write_atomic_replaces_and_names_the_path_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.json");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"two");
    assert_eq!(names(dir.path()), BTreeSet::from(["a.json".to_owned()]));

    let missing = dir.path().join("no-such-dir").join("b.json");
    let err = write_atomic(&missing, b"x").unwrap_err().to_string();
    assert!(err.contains("no-such-dir"), "{err}");
    assert_eq!(names(dir.path()), BTreeSet::from(["a.json".to_owned()]));
}

#[test]
fn a_lock_excludes_a_second_open_until_dropped() {
    let (_dir, store) = store();
    let (id, _) = result(1);
    let (other, _) = result(2);
    let guard = store.try_lock(&id).unwrap().expect("free lock");
    assert_eq!(guard.path(), store.lock_path(&id));
    assert!(store.try_lock(&id).unwrap().is_none());
    let second = store.try_lock(&other).unwrap();
    assert!(second.is_some(), "locks of other ids are independent");
    drop(guard);
    assert!(store.try_lock(&id).unwrap().is_some());
}

const FLOCK: &str = "/usr/bin/flock";

fn require_flock() {
    assert!(
        Path::new(FLOCK).exists(),
        "{FLOCK} (util-linux) is missing: these tests need it to hold locks from another process"
    );
}

#[test]
fn our_lock_excludes_other_processes() {
    require_flock();
    let (_dir, store) = store();
    let (id, _) = result(1);
    let path = store.lock_path(&id);
    let try_from_outside = || {
        let status = Command::new(FLOCK)
            .args(["-n", "-x"])
            .arg(&path)
            .arg("true")
            .status();
        status.unwrap().success()
    };
    let guard = store.try_lock(&id).unwrap().unwrap();
    assert!(!try_from_outside());
    drop(guard);
    assert!(try_from_outside());
}

/// A shell that takes the lock with flock(1) on its fd 9, then becomes `sleep 30` still holding it.
fn hold_lock_in_child(path: &Path) -> Child {
    let script = format!(r#"exec 9>>"$1" && {FLOCK} -x 9 && echo locked && exec sleep 30"#);
    let mut child = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "the child could not take the lock");
    child
}

#[test]
fn a_lock_held_by_a_killed_process_is_free() {
    require_flock();
    let (_dir, store) = store();
    let (id, _) = result(1);
    let mut child = hold_lock_in_child(&store.lock_path(&id));
    assert!(store.try_lock(&id).unwrap().is_none(), "held by the child");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child is still alive"
    );
    child.kill().unwrap(); // SIGKILL: no chance to unlock
    child.wait().unwrap();
    assert!(store.try_lock(&id).unwrap().is_some());
}

fn pid_of_dead_process() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap(); // reaped: a zombie would still count as alive
    pid
}

#[test]
fn open_removes_temp_files_of_dead_processes_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let id = put(&Store::open(root).unwrap(), 1);
    let dead = pid_of_dead_process();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let me = std::process::id();

    let stale = [
        format!("runs/.a.json.tmp-{dead}-0"),
        format!("failed/.b.json.tmp-{dead}-1"),
        format!("locks/.c.lock.tmp-{dead}-2"),
        format!(".d.csv.tmp-{dead}-3"),
    ];
    let kept = [
        format!("runs/.e.json.tmp-{me}-0"),
        format!("runs/.f.json.tmp-{}-0", sleeper.id()),
        "runs/.g.json.tmp-x-1".to_owned(),
        "runs/notes.txt".to_owned(),
        format!("runs/.h.json.tmp-0-{dead}"),
        format!("runs/{id}.json"),
    ];
    for name in &stale {
        fs::write(root.join(name), "partial").unwrap();
    }
    for name in &kept[..kept.len() - 1] {
        fs::write(root.join(name), "partial").unwrap();
    }

    let store = Store::open(root).unwrap();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    for name in &stale {
        assert!(!root.join(name).exists(), "{name} should be removed");
    }
    for name in &kept {
        assert!(root.join(name).exists(), "{name} should be kept");
    }
    assert!(store.is_done(&id));
}

// --- Crash safety: a child rewrites one file forever and is killed with SIGKILL. ---

const CRASH_TARGET: &str = "DYNATREE_STORE_CRASH_TARGET";
const CRASH_READY: &str = "DYNATREE_STORE_CRASH_READY";

/// One of the two documents the child alternates between: about 1.5 MB, so that most of each
/// loop iteration is spent writing and a kill usually lands mid-write.
fn crash_document(which: &str) -> Vec<u8> {
    let rows: Vec<Value> = (0..20_000)
        .map(|i| json!({"i": i, "x": i as f64 * 0.37, "which": which, "pad": which.repeat(24)}))
        .collect();
    serde_json::to_vec(&json!({"doc": which, "rows": rows})).unwrap()
}

/// Not a test of its own: the body of the child process `write_atomic_survives_sigkill` starts
/// (this test binary, re-run with the environment variables set). Without them it returns.
#[test]
fn crash_child_helper() {
    let (Ok(target), Ok(ready)) = (std::env::var(CRASH_TARGET), std::env::var(CRASH_READY)) else {
        return;
    };
    let docs = [crash_document("a"), crash_document("b")];
    write_atomic(Path::new(&target), &docs[0]).unwrap();
    fs::write(&ready, b"").unwrap();
    for i in 1.. {
        write_atomic(Path::new(&target), &docs[i % 2]).unwrap();
    }
}

fn spawn_crash_child(target: &Path, ready: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_TARGET, target)
        .env(CRASH_READY, ready)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the crash child exited early"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the crash child never got ready"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// xorshift64: random kill delays without a dependency; the seed is printed to reproduce.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn write_atomic_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let runs = Store::open(root).unwrap().root().join("runs");
    let target: PathBuf = runs.join("doc.json");
    let ready = root.join("ready");
    let docs = [crash_document("a"), crash_document("b")];
    write_atomic(&target, &docs[0]).unwrap();

    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut state = (nanos as u64) | 1;
    eprintln!("kill delays seeded with {state}");
    let (mut seen, mut leftovers) = ([0; 2], 0);
    for round in 0..20 {
        let _ = fs::remove_file(&ready);
        let mut child = spawn_crash_child(&target, &ready);
        wait_for(&ready, &mut child);
        std::thread::sleep(Duration::from_micros(next_random(&mut state) % 30_000));
        child.kill().unwrap();
        child.wait().unwrap();

        let bytes = fs::read(&target).unwrap();
        let which = docs.iter().position(|d| *d == bytes);
        let which = which.unwrap_or_else(|| {
            panic!(
                "round {round}: the file is neither document ({} bytes)",
                bytes.len()
            )
        });
        seen[which] += 1;
        serde_json::from_slice::<Value>(&bytes).unwrap();
        leftovers += temp_files(&runs).len();
        Store::open(root).unwrap();
        assert_eq!(temp_files(&runs), Vec::<String>::new(), "round {round}");
    }
    eprintln!("documents seen after kills: {seen:?}; temp files left by kills: {leftovers}");
    assert_eq!(names(&runs), BTreeSet::from(["doc.json".to_owned()]));
}
