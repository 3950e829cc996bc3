//! Content-addressed, crash-safe, lock-protected results under an artifacts directory.
//!
//! Layout under the root: `runs/<id>.json` (finished results), `failed/<id>.json` (the last error
//! of a failed run), `locks/<id>.lock` (per-run locks); temp files only as
//! `<dir>/.<name>.tmp-<pid>-<n>` beside their target. A run's id is the hash of its config, and a
//! result carries a checksum of its own content, so anything that does not verify (truncated,
//! edited, written by an older schema or canonical form) is treated as not done and re-run.
//! Nothing here deletes or overwrites a verifying result, except `write_result` for the same id.

mod atomic;
mod canonical;
mod lock;

pub use atomic::{write_atomic, write_if_changed};
pub use canonical::{canonical_json, content_sha256, run_id, sha256_hex, ObjectTemplate};
pub use lock::RunLock;

use canonical::CONTENT_FIELD;
use serde_json::{json, Value};

/// Parses a store file. serde_json's `float_roundtrip` feature (enabled in Cargo.toml) reads
/// every float back exactly as it was printed, so ids and checksums survive a round trip.
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            format!("truncated: {e}")
        } else {
            e.to_string()
        }
    })
}
use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bump when the meaning of a stored result changes: older results then stop verifying.
pub const SCHEMA_VERSION: u32 = 2;

const RUNS: &str = "runs";
const FAILED: &str = "failed";
const LOCKS: &str = "locks";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored result that exists but does not verify: re-run it.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Corrupt {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// `write_result` was handed something that would not verify once stored.
    #[error("refusing to write {}: {reason}", path.display())]
    InvalidResult { path: PathBuf, reason: String },
    /// Ids become file names, so anything that could escape the directory is refused.
    #[error("invalid run id {id:?} (for a file in {}): expected letters, digits, '-', '_' or '.', not starting with '.'", dir.display())]
    InvalidId { dir: PathBuf, id: String },
    /// A command that only reads was pointed at a directory that is not there.
    #[error("artifacts directory {} does not exist (a misspelt --artifacts? `dynatree run` creates it)", path.display())]
    Missing { path: PathBuf },
    /// `write_atomic` was given a path it cannot put a temp file beside (no file name).
    #[error("{}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: String },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        StoreError::Io {
            action,
            path,
            source,
        }
    }
}

/// One thing wrong with one file under `runs/`, as `verify` reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub problem: String,
}

/// The artifacts directory. Cheap to open; every method goes to the file system.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Creates `runs/`, `failed/` and `locks/` and removes temp files left by dead processes (a
    /// temp file whose pid `kill(pid, 0)` says does not exist), in those and in the root.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for sub in [RUNS, FAILED, LOCKS] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| StoreError::io("cannot create", &dir, e))?;
            atomic::remove_stale_temps(&dir)?;
        }
        atomic::remove_stale_temps(root)?;
        Ok(store)
    }

    /// For commands that only read (`verify`, `status`, `plan`, `why`, `aggregate`, `report`):
    /// the directory must exist, and nothing is created or removed in it.
    pub fn open_read(root: &Path) -> Result<Store, StoreError> {
        if !root.is_dir() {
            return Err(StoreError::Missing {
                path: root.to_path_buf(),
            });
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn result_path(&self, id: &str) -> PathBuf {
        self.root.join(RUNS).join(format!("{id}.json"))
    }

    pub fn failure_path(&self, id: &str) -> PathBuf {
        self.root.join(FAILED).join(format!("{id}.json"))
    }

    pub fn lock_path(&self, id: &str) -> PathBuf {
        self.root.join(LOCKS).join(format!("{id}.lock"))
    }

    /// Stores a finished result: `result` must be an object holding at least "id" (== id) and
    /// "config" (with run_id(config) == id); sets "schema_version" and "content_sha256", writes
    /// atomically, then removes failed/<id>.json if present.
    pub fn write_result(&self, id: &str, result: Value) -> Result<(), StoreError> {
        self.check_id(RUNS, id)?;
        let path = self.result_path(id);
        let bytes = stamp_result(&path, id, result)?;
        write_atomic(&path, &bytes)?;
        let failure = self.failure_path(id);
        match fs::remove_file(&failure) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(StoreError::io("cannot remove", &failure, e))
            }
            _ => Ok(()),
        }
    }

    /// The stored result if it exists and verifies; Ok(None) if absent; Err if present but
    /// corrupt/stale (so callers can re-run it).
    pub fn read_result(&self, id: &str) -> Result<Option<Value>, StoreError> {
        self.check_id(RUNS, id)?;
        load_result(&self.result_path(id), id)
    }

    /// Whether the result exists and verifies.
    pub fn is_done(&self, id: &str) -> bool {
        matches!(self.read_result(id), Ok(Some(_)))
    }

    /// Records `{"id","config","error","time"}` atomically in failed/<id>.json, for
    /// `dynatree status`. A stored result of the same id is left alone.
    pub fn write_failure(&self, id: &str, config: &Value, error: &str) -> Result<(), StoreError> {
        self.check_id(FAILED, id)?;
        let record = json!({"id": id, "config": config, "error": error, "time": utc_now()});
        let mut bytes = serde_json::to_vec(&record).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(&self.failure_path(id), &bytes)
    }

    /// The error message of the run's last failure; None when there is none or the record is
    /// unreadable (a failure record is informational and must never stop anything).
    pub fn read_failure(&self, id: &str) -> Option<String> {
        self.check_id(FAILED, id).ok()?;
        let bytes = fs::read(self.failure_path(id)).ok()?;
        let record = parse_json(&bytes).ok()?;
        Some(record.get("error")?.as_str()?.to_owned())
    }

    /// Exclusive, non-blocking lock on locks/<id>.lock with flock(LOCK_EX|LOCK_NB). Ok(None)
    /// when another process (or another open of the file in this one) holds it. The lock is
    /// released when the guard drops or the process dies (kill -9 included), so stale locks
    /// cannot block.
    pub fn try_lock(&self, id: &str) -> Result<Option<RunLock>, StoreError> {
        self.check_id(LOCKS, id)?;
        RunLock::try_acquire(&self.lock_path(id))
    }

    /// Every file under runs/: checks that it parses, that content_sha256 matches, that its "id"
    /// equals the file name and run_id(config). Returns one entry per problem (path + what is
    /// wrong); empty when all verify. Temp files being written are skipped.
    pub fn verify(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        for (path, id) in self.run_files()? {
            let Some(id) = id else {
                let problem = "not a result file (expected <id>.json)".to_owned();
                problems.push(Problem { path, problem });
                continue;
            };
            match load_result(&path, &id) {
                Ok(_) => {}
                Err(StoreError::Corrupt {
                    problems: found, ..
                }) => problems.extend(found.into_iter().map(|problem| Problem {
                    path: path.clone(),
                    problem,
                })),
                Err(e) => problems.push(Problem {
                    path,
                    problem: e.to_string(),
                }),
            }
        }
        Ok(problems)
    }

    /// Ids of the results that verify.
    pub fn done_ids(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut done = BTreeSet::new();
        for (path, id) in self.run_files()? {
            if let Some(id) = id {
                if matches!(load_result(&path, &id), Ok(Some(_))) {
                    done.insert(id);
                }
            }
        }
        Ok(done)
    }

    /// The entries of runs/ other than temp files, sorted, each with its id when the name is a
    /// valid `<id>.json`.
    fn run_files(&self) -> Result<Vec<(PathBuf, Option<String>)>, StoreError> {
        let dir = self.root.join(RUNS);
        if !dir.exists() {
            // An artifacts directory without results yet (opened read-only) holds none.
            return Ok(Vec::new());
        }
        let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("cannot list", &dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("cannot list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_str().unwrap_or("");
            if atomic::temp_owner(name).is_some() {
                continue;
            }
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            let id = name
                .strip_suffix(".json")
                .filter(|id| is_file && valid_id(id))
                .map(str::to_owned);
            files.push((entry.path(), id));
        }
        files.sort();
        Ok(files)
    }

    fn check_id(&self, sub: &str, id: &str) -> Result<(), StoreError> {
        if valid_id(id) {
            return Ok(());
        }
        let dir = self.root.join(sub);
        Err(StoreError::InvalidId {
            dir,
            id: id.to_owned(),
        })
    }
}

/// A name that stays inside its directory and is never taken for a hidden or temp file.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The bytes to store for `result`: checks it, sets "schema_version" and "content_sha256", and
/// verifies the bytes as a later read will, so nothing is stored that would read back as stale.
fn stamp_result(path: &Path, id: &str, result: Value) -> Result<Vec<u8>, StoreError> {
    let invalid = |reason: String| StoreError::InvalidResult {
        path: path.to_path_buf(),
        reason,
    };
    let Value::Object(mut map) = result else {
        return Err(invalid("a result must be a JSON object".into()));
    };
    if map.get("id").and_then(Value::as_str) != Some(id) {
        return Err(invalid(format!("its \"id\" is not {id:?}")));
    }
    let config = map
        .get("config")
        .ok_or_else(|| invalid("no \"config\"".into()))?;
    if run_id(config) != id {
        return Err(invalid(format!("its config hashes to {}", run_id(config))));
    }
    map.insert("schema_version".into(), json!(SCHEMA_VERSION));
    map.remove(CONTENT_FIELD);
    let mut value = Value::Object(map);
    value[CONTENT_FIELD] = json!(content_sha256(&value));
    let mut bytes = serde_json::to_vec(&value).unwrap_or_default();
    bytes.push(b'\n');
    match check_result(&bytes, id) {
        Ok(_) => Ok(bytes),
        Err(problems) => Err(invalid(problems.join("; "))),
    }
}

/// Reads and verifies the result at `path`; Ok(None) when there is no file.
fn load_result(path: &Path, id: &str) -> Result<Option<Value>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("cannot read", path, e)),
    };
    check_result(&bytes, id)
        .map(Some)
        .map_err(|problems| StoreError::Corrupt {
            path: path.to_path_buf(),
            problems,
        })
}

/// The parsed result if `bytes` verify as the result of run `id`, else everything wrong.
fn check_result(bytes: &[u8], id: &str) -> Result<Value, Vec<String>> {
    let value = parse_json(bytes).map_err(|e| vec![format!("not valid JSON: {e}")])?;
    let Some(map) = value.as_object() else {
        return Err(vec!["not a JSON object".into()]);
    };
    let mut problems = Vec::new();
    match map.get("schema_version") {
        Some(v) if *v == json!(SCHEMA_VERSION) => {}
        v => problems.push(format!(
            "stale: schema_version is {}, expected {SCHEMA_VERSION}",
            v.map_or("missing".into(), Value::to_string)
        )),
    }
    let actual = content_sha256(&value);
    match map.get(CONTENT_FIELD).and_then(Value::as_str) {
        Some(stored) if stored == actual => {}
        Some(stored) => problems.push(format!(
            "content_sha256 mismatch (edited or damaged): file says {stored}, content hashes to {actual}"
        )),
        None => problems.push("no content_sha256".into()),
    }
    match map.get("id").and_then(Value::as_str) {
        Some(field) if field == id => {}
        Some(field) => problems.push(format!("\"id\" is {field}, but the file name says {id}")),
        None => problems.push("no \"id\"".into()),
    }
    match map.get("config").map(run_id) {
        Some(config_id) if config_id == id => {}
        Some(config_id) => problems.push(format!("stale: config hashes to {config_id}, not {id}")),
        None => problems.push("no \"config\"".into()),
    }
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_read_back_exactly() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = f64::from_bits(state >> 2) % 1e6;
            if !x.is_finite() {
                continue;
            }
            let text = serde_json::to_string(&x).unwrap();
            assert_eq!(
                super::parse_json(text.as_bytes()).unwrap().as_f64(),
                Some(x),
                "{text}"
            );
        }
        assert_eq!(super::parse_json(b"1e-30").unwrap().as_f64(), Some(1e-30));
    }

    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let now = utc_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }

    #[test]
    fn ids_cannot_escape_their_directory() {
        for id in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "a\0b"] {
            assert!(!valid_id(id), "{id:?}");
        }
        assert!(valid_id(&run_id(&json!({}))));
        assert!(valid_id("grid-1_v2.0"));
    }

    #[test]
    fn a_stamped_result_verifies_and_floats_survive() {
        let config = json!({"tau": 0.1 + 0.2, "x": [1e-30, 123.456e7, 6.0]});
        let id = run_id(&config);
        let result = json!({"id": id, "config": config, "metrics": {"wall_s": 0.7 * 3.0}});
        let bytes = stamp_result(Path::new("r.json"), &id, result).unwrap();
        let value = check_result(&bytes, &id).unwrap();
        assert_eq!(value["schema_version"], json!(SCHEMA_VERSION));
        assert!(check_result(&bytes[..bytes.len() - 2], &id).is_err());
    }
}
