//! `datasets/lock.toml`: what `dynatree fetch` found for every dataset file — the hub commit a
//! revision resolved to, the size and the sha256 — so that a later fetch can tell when the bytes
//! changed. Written sorted and atomically: fetching the same files rewrites identical bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DataError;
use crate::manifest::{DatasetSource, Manifest};

const HEADER: &str = "# Dataset pins written by `dynatree fetch`: per file the hub repo, revision, resolved\n# commit, path, size in bytes and sha256. `dynatree fetch --update-lock` records changes.\n\n";

/// The lock file's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default, rename = "file")]
    pub files: Vec<LockedFile>,
}

/// One dataset file. Hub files have `repo`, `revision` and `commit`, and `path` is the path in
/// the repository; a local file has only `path`, as the manifest resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub path: String,
    pub size: u64,
    /// `sha256:<hex>`.
    pub sha256: String,
}

impl LockedFile {
    fn key(&self) -> (Option<&str>, Option<&str>, &str) {
        (
            self.repo.as_deref(),
            self.revision.as_deref(),
            self.path.as_str(),
        )
    }

    /// How errors name the file: `repo@revision:path`, or the local path.
    pub fn name(&self) -> String {
        match (&self.repo, &self.revision) {
            (Some(repo), Some(revision)) => format!("{repo}@{revision}:{}", self.path),
            _ => self.path.clone(),
        }
    }
}

/// What recording a file changed in the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Unchanged,
    Added,
    /// The same bytes at another commit of the revision.
    CommitChanged {
        from: Option<String>,
    },
    /// New bytes, recorded because `--update-lock` was given.
    Updated {
        from: String,
    },
}

impl Lock {
    /// Reads a lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(DataError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| DataError::Lock {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the lock sorted by repo, revision and path, atomically; false when unchanged.
    pub fn save(&self, path: &Path) -> Result<bool, DataError> {
        let mut sorted = self.clone();
        sorted.files.sort_by(|a, b| a.key().cmp(&b.key()));
        let body = toml::to_string(&sorted).map_err(|e| DataError::Lock {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        crate::store::write_if_changed(path, format!("{HEADER}{body}").as_bytes()).map_err(|e| {
            DataError::Lock {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })
    }

    pub fn find(&self, file: &LockedFile) -> Option<&LockedFile> {
        self.files.iter().find(|f| f.key() == file.key())
    }

    /// The checksum recorded for a hub dataset file.
    pub fn hub_pin(&self, repo: &str, revision: &str, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.key() == (Some(repo), Some(revision), path))
            .map(|f| f.sha256.as_str())
    }

    /// Pins every hub file that `manifest` leaves unpinned with the checksum this lock recorded
    /// when `fetch --update-lock` trusted it on first use. A file the lock does not know either
    /// is an error naming it and the command that pins it: no run is measured on bytes nobody
    /// pinned.
    pub fn pin(&self, manifest: &mut Manifest, lock_path: &Path) -> Result<(), DataError> {
        match self.pin_known(manifest).into_iter().next() {
            None => Ok(()),
            Some((dataset, file)) => Err(DataError::Unpinned {
                dataset,
                file,
                lock: lock_path.to_path_buf(),
                manifest: manifest.path.clone(),
            }),
        }
    }

    /// Pins the unpinned hub files of `manifest` that this lock knows; returns (dataset,
    /// `repo@revision:path`) of those it does not.
    pub fn pin_known(&self, manifest: &mut Manifest) -> Vec<(String, String)> {
        let mut unknown = Vec::new();
        for (name, spec) in &mut manifest.datasets {
            let DatasetSource::Hub {
                hub,
                revision,
                files,
            } = &mut spec.source
            else {
                continue;
            };
            for (file, pin) in files.iter_mut().filter(|(_, pin)| pin.is_none()) {
                match self.hub_pin(hub, revision, file) {
                    Some(locked) => *pin = Some(locked.to_string()),
                    None => unknown.push((name.clone(), format!("{hub}@{revision}:{file}"))),
                }
            }
        }
        unknown
    }

    /// Records `file`. A checksum different from the locked one is an error naming the file and
    /// both hashes, unless `update` asks to record the new one on purpose.
    pub fn record(
        &mut self,
        file: LockedFile,
        update: bool,
        lock_path: &Path,
    ) -> Result<Recorded, DataError> {
        let Some(index) = self.files.iter().position(|f| f.key() == file.key()) else {
            self.files.push(file);
            return Ok(Recorded::Added);
        };
        let old = &self.files[index];
        let outcome = if old.sha256 != file.sha256 || old.size != file.size {
            if !update {
                return Err(DataError::LockMismatch {
                    file: file.name(),
                    lock: lock_path.to_path_buf(),
                    expected: old.sha256.clone(),
                    actual: file.sha256.clone(),
                });
            }
            Recorded::Updated {
                from: old.sha256.clone(),
            }
        } else if old.commit != file.commit {
            Recorded::CommitChanged {
                from: old.commit.clone(),
            }
        } else {
            Recorded::Unchanged
        };
        self.files[index] = file;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, sha: &str, commit: &str) -> LockedFile {
        LockedFile {
            repo: Some("org/data".into()),
            revision: Some("main".into()),
            commit: Some(commit.into()),
            path: path.into(),
            size: 3,
            sha256: format!("sha256:{sha}"),
        }
    }

    #[test]
    fn saves_sorted_and_stable_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lock.toml");
        let mut lock = Lock::default();
        lock.record(entry("b.parquet", "bb", "c1"), false, &path)
            .unwrap();
        lock.record(entry("a.parquet", "aa", "c1"), false, &path)
            .unwrap();
        lock.record(
            LockedFile {
                repo: None,
                revision: None,
                commit: None,
                path: "/x/local.txt".into(),
                size: 1,
                sha256: "sha256:cc".into(),
            },
            false,
            &path,
        )
        .unwrap();
        lock.save(&path).unwrap();
        let first = std::fs::read(&path).unwrap();
        let text = String::from_utf8(first.clone()).unwrap();
        assert_eq!(text.matches("[[file]]").count(), 3, "{text}");
        let a = text.find("a.parquet").unwrap();
        let b = text.find("b.parquet").unwrap();
        assert!(a < b, "{text}");
        let back = Lock::load(&path).unwrap();
        assert_eq!(back.files.len(), 3);
        back.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
    }

    #[test]
    fn a_changed_checksum_needs_update() {
        let path = Path::new("lock.toml");
        let mut lock = Lock::default();
        lock.record(entry("a", "aa", "c1"), false, path).unwrap();
        assert_eq!(
            lock.record(entry("a", "aa", "c1"), false, path).unwrap(),
            Recorded::Unchanged
        );
        assert_eq!(
            lock.record(entry("a", "aa", "c2"), false, path).unwrap(),
            Recorded::CommitChanged {
                from: Some("c1".into())
            }
        );
        let msg = lock
            .record(entry("a", "ff", "c2"), false, path)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("org/data@main:a")
                && msg.contains("sha256:aa")
                && msg.contains("sha256:ff"),
            "{msg}"
        );
        assert_eq!(lock.files[0].sha256, "sha256:aa");
        assert_eq!(
            lock.record(entry("a", "ff", "c2"), true, path).unwrap(),
            Recorded::Updated {
                from: "sha256:aa".into()
            }
        );
        assert_eq!(lock.files[0].sha256, "sha256:ff");
    }

    #[test]
    fn a_missing_lock_is_empty_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Lock::load(&dir.path().join("none.toml")).unwrap(),
            Lock::default()
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[file]]\nnope = 1\n").unwrap();
        assert!(Lock::load(&bad)
            .unwrap_err()
            .to_string()
            .contains("bad.toml"));
    }
}
