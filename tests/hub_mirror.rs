//! The hub code path for real, without internet: a tiny HTTP/1.1 server on 127.0.0.1 serves
//! the fixture models and the real dataset files laid out as on the Hugging Face hub, answering
//! exactly what hf-hub's sync API asks (repo info, the `Range: bytes=0-0` metadata request and
//! the ranged download). The binary is pointed at it with `HF_ENDPOINT` and a temporary cache.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    dataset, failed, ok, output, AUSTEN, WIKI_TEST, WIKI_TEST_SHA256, WIKI_VALIDATION,
    WIKI_VALIDATION_SHA256,
};
use sha2::{Digest, Sha256};

const TARGET_COMMIT: &str = "1111111111111111111111111111111111111111";
const DRAFT_COMMIT: &str = "2222222222222222222222222222222222222222";
const WIKITEXT_COMMIT: &str = "3333333333333333333333333333333333333333";
const PG19_COMMIT: &str = "4444444444444444444444444444444444444444";

const PG19_FILE: &str = "data/test-00000-of-00001.parquet";
/// The real PG-19 copy the paper manifests name (served here with the Austen stand-in's bytes).
const PAPER_PG19_REPO: &str = "emozilla/pg19";
const PAPER_PG19_COMMIT: &str = "c021754c8e01c5b1cc83a1f549c1f97fbbb756b8";
const PAPER_PG19_FILE: &str = "data/test-00000-of-00001-29a571947c0b5ccc.parquet";
const PG19_SHA256: &str = common::AUSTEN_SHA256;

/// A repository the mirror serves: `kind` is "models" or "datasets".
struct HubRepo {
    kind: &'static str,
    id: &'static str,
    commit: &'static str,
    files: Vec<(String, PathBuf)>,
}

fn repos() -> Vec<HubRepo> {
    let model = |id, commit, dir: &str| HubRepo {
        kind: "models",
        id,
        commit,
        files: ["config.json", "tokenizer.json", "model.safetensors"]
            .iter()
            .map(|f| (f.to_string(), common::fixture_dir().join(dir).join(f)))
            .collect(),
    };
    vec![
        model("tiny/target", TARGET_COMMIT, "target"),
        model("tiny/draft", DRAFT_COMMIT, "draft"),
        HubRepo {
            kind: "datasets",
            id: "Salesforce/wikitext",
            commit: WIKITEXT_COMMIT,
            files: [WIKI_VALIDATION, WIKI_TEST]
                .iter()
                .map(|f| (f.to_string(), dataset(f)))
                .collect(),
        },
        HubRepo {
            kind: "datasets",
            id: "test/pg19",
            commit: PG19_COMMIT,
            files: vec![(PG19_FILE.to_string(), dataset(AUSTEN))],
        },
        HubRepo {
            kind: "datasets",
            id: PAPER_PG19_REPO,
            commit: PAPER_PG19_COMMIT,
            files: vec![(PAPER_PG19_FILE.to_string(), dataset(AUSTEN))],
        },
    ]
}

/// Misbehaviour to inject, by file name in its repository.
#[derive(Clone, Default)]
struct Faults {
    /// Serve these bytes altered (the ETag still names the true content, as a lying mirror would).
    corrupt: Option<String>,
    /// Advertise the full length on downloads, send half of it and close the connection.
    truncate: Option<String>,
}

struct Mirror {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<Faults>>,
}

impl Mirror {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let repos = Arc::new(repos());
        let thread = {
            let (stop, log, faults) = (stop.clone(), log.clone(), faults.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            let (repos, log, faults) = (repos.clone(), log.clone(), faults.clone());
                            std::thread::spawn(move || {
                                let faults = faults.lock().unwrap().clone();
                                let _ = serve(stream, &repos, &faults, &log);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            url,
            stop,
            thread: Some(thread),
            log,
            faults,
        }
    }

    fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// The requests seen so far (and forgets them).
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: TcpStream,
    repos: &[HubRepo],
    faults: &Faults,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push(match &range {
        Some(r) => format!("{method} {target} Range: {r}"),
        None => format!("{method} {target}"),
    });
    let mut out = stream;
    if method != "GET" {
        return respond(&mut out, "405 Method Not Allowed", &[], b"");
    }
    for repo in repos {
        // GET /api/{models|datasets}/{id}/revision/{revision}
        let info = format!("/api/{}/{}/revision/", repo.kind, repo.id);
        if let Some(revision) = target.strip_prefix(&info) {
            if revision != "main" && revision != repo.commit {
                return respond(&mut out, "404 Not Found", &[], b"no such revision");
            }
            let siblings: Vec<_> = repo
                .files
                .iter()
                .map(|(name, _)| serde_json::json!({ "rfilename": name }))
                .collect();
            let body = serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
            let body = body.to_string();
            return respond(
                &mut out,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                body.as_bytes(),
            );
        }
        // GET /{id}/resolve/{revision}/{file} (models), /datasets/{id}/resolve/... (datasets)
        let prefix = match repo.kind {
            "models" => format!("/{}/resolve/", repo.id),
            _ => format!("/{}/{}/resolve/", repo.kind, repo.id),
        };
        let Some(rest) = target.strip_prefix(&prefix) else {
            continue;
        };
        let Some((revision, file)) = rest.split_once('/') else {
            break;
        };
        let Some((_, local)) = repo.files.iter().find(|(name, _)| name == file) else {
            break;
        };
        if revision != "main" && revision != repo.commit {
            break;
        }
        let mut bytes = std::fs::read(local)?;
        let etag = format!("\"{:x}\"", Sha256::digest(&bytes));
        if faults.corrupt.as_deref() == Some(file) {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }
        let total = bytes.len();
        let (start, end) = match range.as_deref().and_then(parse_range) {
            Some((start, end)) => (start, end.unwrap_or(total - 1).min(total - 1)),
            None => (0, total - 1),
        };
        if start >= total {
            return respond(
                &mut out,
                "416 Range Not Satisfiable",
                &[("Content-Range", format!("bytes */{total}"))],
                b"",
            );
        }
        let headers = [
            ("ETag", etag),
            ("X-Repo-Commit", repo.commit.to_string()),
            ("Content-Range", format!("bytes {start}-{end}/{total}")),
            ("Accept-Ranges", "bytes".to_string()),
        ];
        let status = if range.is_some() {
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let body = &bytes[start..=end];
        let is_metadata = range.as_deref() == Some("bytes=0-0");
        if faults.truncate.as_deref() == Some(file) && !is_metadata {
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in &headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())?;
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            return out.shutdown(Shutdown::Both);
        }
        return respond(&mut out, status, &headers, body);
    }
    respond(&mut out, "404 Not Found", &[], b"not found")
}

/// `bytes=S-` or `bytes=S-E`.
fn parse_range(value: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = value.strip_prefix("bytes=")?.split_once('-')?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start.parse().ok()?, end))
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// Experiment and models of the hub manifests: the fixture pair as the mirror serves it.
const HUB_HEADER: &str = r#"[experiment]
name = "hub-mirror"
seed = 5
repeats = 1
warmup = 0

[models]
target = { hub = "tiny/target" }
draft = { hub = "tiny/draft" }
dtype = "f32"
device = "cpu"
"#;

/// A temporary working directory with its own hub cache.
struct Workspace {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Workspace {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        Self { _tmp: tmp, dir }
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("hub")
    }

    /// A manifest on the hub models and hub datasets.
    fn manifest(&self, name: &str, count: usize) -> String {
        let text = format!(
            r#"
{HUB_HEADER}
[datasets.wikitext2]
label = "WikiText-2"
kind = "wikitext"
hub = "Salesforce/wikitext"
files = {{ "{WIKI_VALIDATION}" = "sha256:{WIKI_VALIDATION_SHA256}", "{WIKI_TEST}" = "sha256:{WIKI_TEST_SHA256}" }}

[datasets.pg19]
label = "PG-19 (Austen)"
kind = "pg19"
hub = "test/pg19"
files = {{ "{PG19_FILE}" = "sha256:{PG19_SHA256}" }}

[prompts]
count = {count}
max_chars = 200

[generation]
max_new_tokens = 4
stop_at_eos = false

[sweep]
dataset = ["wikitext2", "pg19"]
method = ["ar", "linear"]

[sweep.linear]
k = [2]
"#
        );
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().to_string()
    }

    fn command(&self, mirror: Option<&Mirror>, args: &[&str]) -> Command {
        let mut cmd = common::dynatree();
        cmd.args(args)
            .current_dir(&self.dir)
            .env("HF_HUB_CACHE", self.cache())
            .env("HF_HOME", self.dir.join("hf-home"))
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_TOKEN");
        for proxy in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(proxy);
        }
        match mirror {
            Some(m) => cmd.env("HF_ENDPOINT", &m.url),
            // Nothing listens there: any request fails at once.
            None => cmd.env("HF_ENDPOINT", "http://127.0.0.1:9"),
        };
        cmd
    }

    fn run(&self, mirror: Option<&Mirror>, args: &[&str]) -> Output {
        output(&mut self.command(mirror, args))
    }

    fn offline(&self, args: &[&str]) -> Output {
        output(self.command(None, args).env("HF_HUB_OFFLINE", "1"))
    }

    fn snapshot_file(&self, repo_dir: &str, commit: &str, file: &str) -> PathBuf {
        self.cache()
            .join(repo_dir)
            .join("snapshots")
            .join(commit)
            .join(file)
    }

    fn blob(&self, repo_dir: &str, sha: &str) -> PathBuf {
        self.cache().join(repo_dir).join("blobs").join(sha)
    }
}

fn lock_entries(path: &Path) -> Vec<toml::Table> {
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    lock["file"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_table().unwrap().clone())
        .collect()
}

const WIKI_DIR: &str = "datasets--Salesforce--wikitext";

#[test]
fn fetch_locks_prompts_run_and_work_offline() {
    let mut mirror = Mirror::start();
    let ws = Workspace::new();
    let manifest = ws.manifest("hub.toml", 1);
    let m = manifest.as_str();

    let out = ok(ws.run(Some(&mirror), &["fetch", m]));
    let requests = mirror.take_log();
    eprintln!("first fetch requests:\n{}", requests.join("\n"));
    // hf-hub's requests: repo info for models, a `Range: bytes=0-0` metadata request and a
    // `Range: bytes=0-` download for every file.
    let wiki = format!("/datasets/Salesforce/wikitext/resolve/main/{WIKI_VALIDATION}");
    assert!(
        requests.contains(&format!("GET {wiki} Range: bytes=0-0")),
        "{requests:?}"
    );
    assert!(
        requests.contains(&format!("GET {wiki} Range: bytes=0-")),
        "{requests:?}"
    );
    assert!(requests.contains(&"GET /api/models/tiny/target/revision/main".to_string()));
    assert!(requests
        .contains(&"GET /tiny/draft/resolve/main/model.safetensors Range: bytes=0-".to_string()));
    assert!(out.contains(&format!("commit {TARGET_COMMIT}")), "{out}");

    let lock_path = ws.dir.join("datasets/lock.toml");
    let entries = lock_entries(&lock_path);
    let expected = [
        (
            "Salesforce/wikitext",
            WIKITEXT_COMMIT,
            WIKI_TEST,
            WIKI_TEST_SHA256,
            dataset(WIKI_TEST),
        ),
        (
            "Salesforce/wikitext",
            WIKITEXT_COMMIT,
            WIKI_VALIDATION,
            WIKI_VALIDATION_SHA256,
            dataset(WIKI_VALIDATION),
        ),
        (
            "test/pg19",
            PG19_COMMIT,
            PG19_FILE,
            PG19_SHA256,
            dataset(AUSTEN),
        ),
    ];
    assert_eq!(entries.len(), expected.len(), "{entries:?}");
    for (entry, (repo, commit, path, sha, local)) in entries.iter().zip(expected) {
        assert_eq!(entry["repo"].as_str(), Some(repo));
        assert_eq!(entry["revision"].as_str(), Some("main"));
        assert_eq!(entry["commit"].as_str(), Some(commit));
        assert_eq!(entry["path"].as_str(), Some(path));
        assert_eq!(
            entry["sha256"].as_str(),
            Some(format!("sha256:{sha}").as_str())
        );
        let size = std::fs::metadata(local).unwrap().len();
        assert_eq!(entry["size"].as_integer(), Some(size as i64));
    }
    assert!(ws
        .snapshot_file(WIKI_DIR, WIKITEXT_COMMIT, WIKI_VALIDATION)
        .is_file());
    assert!(ws
        .snapshot_file("models--tiny--target", TARGET_COMMIT, "model.safetensors")
        .is_file());

    // Fetching again downloads nothing and rewrites an identical lock.
    let first_lock = std::fs::read(&lock_path).unwrap();
    ok(ws.run(Some(&mirror), &["fetch", m]));
    let requests = mirror.take_log();
    assert!(
        !requests.iter().any(|r| r.contains("/resolve/")),
        "{requests:?}"
    );
    assert_eq!(std::fs::read(&lock_path).unwrap(), first_lock);

    // prompts: the count per dataset, in text and JSON.
    let three = ws.manifest("three.toml", 3);
    let listing = ok(ws.run(Some(&mirror), &["prompts", &three]));
    assert!(
        listing.contains("== wikitext2 (WikiText-2): 3 prompts"),
        "{listing}"
    );
    assert!(
        listing.contains("== pg19 (PG-19 (Austen)): 3 prompts"),
        "{listing}"
    );
    let lines: Vec<serde_json::Value> = ok(ws.run(Some(&mirror), &["prompts", &three, "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let text = line["text"].as_str().unwrap();
        assert_eq!(line["chars"].as_u64(), Some(text.chars().count() as u64));
        assert!(text.chars().count() <= 200 && !text.is_empty());
        assert_eq!(
            line["sha256"].as_str().unwrap(),
            format!("{:x}", Sha256::digest(text.as_bytes()))
        );
    }
    let one: Vec<serde_json::Value> = ok(ws.run(Some(&mirror), &["prompts", m, "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(one.len(), 2);

    // run: the fixture pair from the mirror; ids carry the hub commits.
    let artifacts = ws.dir.join("artifacts");
    let art = artifacts.to_str().unwrap();
    let online_plan = ok(ws.run(Some(&mirror), &["plan", m, "--artifacts", art]));
    ok(ws.run(Some(&mirror), &["run", m, "--artifacts", art]));
    let done = common::results(&artifacts);
    assert_eq!(done.len(), 4);
    for result in done.values() {
        let config = &result["config"];
        assert_eq!(
            config["models"]["target"]["commit"].as_str(),
            Some(TARGET_COMMIT),
            "{config}"
        );
        if result["config"]["method"] == "linear" {
            assert_eq!(
                config["models"]["draft"]["commit"].as_str(),
                Some(DRAFT_COMMIT),
                "{config}"
            );
        }
        assert_eq!(result["lossless"], serde_json::json!(true));
        // The prompts `run` used are the ones `prompts` prints.
        let dataset = result["manifest"]["dataset_label"].as_str().unwrap();
        let name = if dataset == "WikiText-2" {
            "wikitext2"
        } else {
            "pg19"
        };
        let printed: Vec<&str> = one
            .iter()
            .filter(|l| l["dataset"] == name)
            .map(|l| l["sha256"].as_str().unwrap())
            .collect();
        let used: Vec<&str> = result["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["sha256"].as_str().unwrap())
            .collect();
        assert_eq!(printed, used);
    }

    // Offline, with the mirror gone: fetch and run work from the cache, with the same ids.
    mirror.stop();
    ok(ws.offline(&["fetch", m]));
    assert_eq!(std::fs::read(&lock_path).unwrap(), first_lock);
    let offline_art = ws.dir.join("offline-artifacts");
    let off = offline_art.to_str().unwrap();
    assert_eq!(
        ok(ws.offline(&["plan", m, "--artifacts", off])),
        online_plan
    );
    ok(ws.offline(&["run", m, "--artifacts", off]));
    let offline_done = common::results(&offline_art);
    assert_eq!(
        offline_done.keys().collect::<Vec<_>>(),
        done.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_corrupted_file_is_refused_and_evicted_by_fetch_and_run() {
    let mirror = Mirror::start();
    let ws = Workspace::new();
    let manifest = ws.manifest("hub.toml", 1);
    let m = manifest.as_str();
    let bad = ws.snapshot_file(WIKI_DIR, WIKITEXT_COMMIT, WIKI_VALIDATION);
    let blob = ws.blob(WIKI_DIR, WIKI_VALIDATION_SHA256);
    mirror.set_faults(Faults {
        corrupt: Some(WIKI_VALIDATION.to_string()),
        ..Faults::default()
    });

    // run refuses the data, and leaves nothing that looks complete.
    let art = ws.dir.join("artifacts");
    let out = failed(ws.run(
        Some(&mirror),
        &[
            "run",
            m,
            "--artifacts",
            art.to_str().unwrap(),
            "--only",
            "dataset=wikitext2",
        ],
    ));
    assert!(
        out.contains(WIKI_VALIDATION) && out.contains(WIKI_VALIDATION_SHA256),
        "{out}"
    );
    assert!(!bad.exists() && !blob.exists(), "{out}");

    // fetch too: the message names the file, the expected and the actual hash.
    let out = failed(ws.run(Some(&mirror), &["fetch", m]));
    let mut corrupted = std::fs::read(dataset(WIKI_VALIDATION)).unwrap();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    let actual = format!("{:x}", Sha256::digest(&corrupted));
    assert!(out.contains(WIKI_VALIDATION), "{out}");
    assert!(
        out.contains(&format!("expected sha256:{WIKI_VALIDATION_SHA256}")),
        "{out}"
    );
    assert!(out.contains(&format!("actual sha256:{actual}")), "{out}");
    assert!(!bad.exists() && !blob.exists(), "{out}");
    assert!(!ws.dir.join("datasets/lock.toml").exists(), "{out}");
    // --update-lock cannot override the manifest.
    let out = failed(ws.run(Some(&mirror), &["fetch", m, "--update-lock"]));
    assert!(out.contains("pin must still match"), "{out}");

    // The mirror fixed, the next fetch downloads it again and succeeds.
    mirror.set_faults(Faults::default());
    mirror.take_log();
    ok(ws.run(Some(&mirror), &["fetch", m]));
    let wiki =
        format!("GET /datasets/Salesforce/wikitext/resolve/main/{WIKI_VALIDATION} Range: bytes=0-");
    assert!(mirror.take_log().contains(&wiki));
    assert!(bad.is_file() && blob.is_file());

    // A lock that disagrees with the bytes is an error until --update-lock records it.
    let lock_path = ws.dir.join("datasets/lock.toml");
    let good_lock = std::fs::read_to_string(&lock_path).unwrap();
    let tampered_sha = "ab".repeat(32);
    std::fs::write(&lock_path, good_lock.replace(PG19_SHA256, &tampered_sha)).unwrap();
    let out = failed(ws.run(Some(&mirror), &["fetch", m]));
    assert!(
        out.contains(PG19_FILE) && out.contains(&tampered_sha) && out.contains(PG19_SHA256),
        "{out}"
    );
    assert!(out.contains("--update-lock"), "{out}");
    assert!(
        ws.snapshot_file("datasets--test--pg19", PG19_COMMIT, PG19_FILE)
            .is_file(),
        "a file matching the manifest stays"
    );
    let out = ok(ws.run(Some(&mirror), &["fetch", m, "--update-lock"]));
    assert!(out.contains("UPDATED"), "{out}");
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), good_lock);
}

#[test]
fn a_truncated_download_is_not_left_as_complete() {
    let mirror = Mirror::start();
    let ws = Workspace::new();
    let manifest = ws.manifest("hub.toml", 1);
    let m = manifest.as_str();
    mirror.set_faults(Faults {
        truncate: Some(PG19_FILE.to_string()),
        ..Faults::default()
    });
    let out = failed(ws.run(Some(&mirror), &["fetch", m]));
    assert!(out.contains(PG19_FILE), "{out}");
    let dir = "datasets--test--pg19";
    assert!(
        !ws.snapshot_file(dir, PG19_COMMIT, PG19_FILE).exists(),
        "{out}"
    );
    assert!(!ws.blob(dir, PG19_SHA256).exists(), "{out}");
    // Offline, the half file is not taken for the real one.
    let out = failed(ws.offline(&["fetch", m]));
    assert!(
        out.contains(PG19_FILE) && out.contains("HF_HUB_OFFLINE"),
        "{out}"
    );

    mirror.set_faults(Faults::default());
    mirror.take_log();
    ok(ws.run(Some(&mirror), &["fetch", m]));
    let requests = mirror.take_log();
    eprintln!("fetch after a truncated download:\n{}", requests.join("\n"));
    let path = ws.snapshot_file(dir, PG19_COMMIT, PG19_FILE);
    assert_eq!(
        format!("{:x}", Sha256::digest(std::fs::read(path).unwrap())),
        PG19_SHA256
    );
}

#[test]
fn offline_with_an_empty_cache_fails_clearly() {
    let ws = Workspace::new();
    let manifest = ws.manifest("hub.toml", 1);
    let out = failed(ws.offline(&["fetch", &manifest]));
    assert!(
        out.contains("HF_HUB_OFFLINE") && out.contains("not in the cache"),
        "{out}"
    );
    assert!(
        out.contains(WIKI_VALIDATION) && out.contains("tiny/target"),
        "{out}"
    );
    assert!(!ws.dir.join("datasets/lock.toml").exists());
}

/// The `[datasets.pg19]` table of `experiments/paper.toml`, as written there.
fn paper_pg19_table() -> String {
    let paper = std::fs::read_to_string(common::repo("experiments/paper.toml")).unwrap();
    let start = paper
        .find("[datasets.pg19]")
        .expect("paper.toml defines pg19");
    let end = paper[start + 1..]
        .find("\n[")
        .map_or(paper.len(), |i| start + 1 + i);
    paper[start..end].to_string()
}

#[test]
fn the_paper_manifests_unpinned_pg19_is_trusted_on_first_use_only_when_asked() {
    let mirror = Mirror::start();
    let ws = Workspace::new();
    let pg19 = paper_pg19_table();
    assert!(
        pg19.contains(PAPER_PG19_REPO) && pg19.contains(PAPER_PG19_FILE),
        "{pg19}"
    );
    let text = format!(
        r#"
{HUB_HEADER}
{pg19}
[prompts]
count = 1
max_chars = 200

[generation]
max_new_tokens = 4
stop_at_eos = false

[sweep]
dataset = ["pg19"]
method = ["ar", "linear"]

[sweep.linear]
k = [2]
"#
    );
    let manifest = ws.dir.join("tofu.toml");
    std::fs::write(&manifest, text).unwrap();
    let m = manifest.to_str().unwrap();
    let lock_path = ws.dir.join("datasets/lock.toml");
    let art = ws.dir.join("artifacts");
    let art = art.to_str().unwrap();

    let out = ok(ws.run(Some(&mirror), &["check", m]));
    assert!(
        out.contains("ok, 2 runs") && out.contains("NOT PINNED yet"),
        "{out}"
    );
    // Nothing pins it: run refuses before any work, fetch without --update-lock too.
    let out = failed(ws.run(Some(&mirror), &["run", m, "--artifacts", art]));
    assert!(
        out.contains(PAPER_PG19_FILE)
            && out.contains("pinned neither by the manifest nor by")
            && out.contains("--update-lock"),
        "{out}"
    );
    assert!(!ws.dir.join("artifacts/runs").exists() || common::results(Path::new(art)).is_empty());
    let out = failed(ws.run(Some(&mirror), &["fetch", m]));
    assert!(
        out.contains(PAPER_PG19_FILE)
            && out.contains(&format!("sha256:{PG19_SHA256}"))
            && out.contains("to trust these bytes on first use"),
        "{out}"
    );
    assert!(!lock_path.exists(), "{out}");

    // --update-lock trusts the bytes, says so loudly and records them.
    let out = ws.run(Some(&mirror), &["fetch", m, "--update-lock"]);
    let shown = ok(out.clone());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(shown.contains("TRUSTED ON FIRST USE"), "{shown}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains(&format!(
                "files = {{ \"{PAPER_PG19_FILE}\" = \"sha256:{PG19_SHA256}\" }}"
            )),
        "{stderr}"
    );
    let entries = lock_entries(&lock_path);
    let entry = entries
        .iter()
        .find(|e| e["repo"].as_str() == Some(PAPER_PG19_REPO))
        .expect("the file is in the lock");
    assert_eq!(entry["revision"].as_str(), Some(PAPER_PG19_COMMIT));
    assert_eq!(entry["commit"].as_str(), Some(PAPER_PG19_COMMIT));
    assert_eq!(entry["path"].as_str(), Some(PAPER_PG19_FILE));
    assert_eq!(
        entry["sha256"].as_str(),
        Some(format!("sha256:{PG19_SHA256}").as_str())
    );
    assert!(ok(ws.run(Some(&mirror), &["check", m])).contains("pinned by"));
    let again = ok(ws.run(Some(&mirror), &["fetch", m]));
    assert!(
        !again.contains("TRUSTED") && again.contains("unchanged"),
        "{again}"
    );

    // The lock now pins it: run measures on exactly those bytes, and says so in each id.
    ok(ws.run(Some(&mirror), &["run", m, "--artifacts", art]));
    let done = common::results(Path::new(art));
    assert_eq!(done.len(), 2);
    for result in done.values() {
        let name = PAPER_PG19_FILE;
        assert_eq!(
            result["config"]["dataset"]["files"][name],
            format!("sha256:{PG19_SHA256}")
        );
    }

    // Other bytes behind the same name later: refused by fetch and by run, lock unchanged.
    let locked = std::fs::read_to_string(&lock_path).unwrap();
    std::fs::remove_dir_all(ws.cache()).unwrap();
    mirror.set_faults(Faults {
        corrupt: Some(PAPER_PG19_FILE.to_string()),
        ..Faults::default()
    });
    let out = failed(ws.run(Some(&mirror), &["fetch", m]));
    assert!(
        out.contains(PAPER_PG19_FILE) && out.contains(&format!("expected sha256:{PG19_SHA256}")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), locked);
    let out = failed(ws.run(Some(&mirror), &["run", m, "--artifacts", art, "--force"]));
    assert!(
        out.contains(&format!("expected sha256:{PG19_SHA256}")),
        "{out}"
    );
}
