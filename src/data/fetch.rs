//! Dataset files on local disk, verified: hub files through hf-hub's cache, local files where
//! the manifest says. A hub file whose bytes do not match the manifest's pin is removed from the
//! cache (its snapshot entry and its blob), so that it never looks complete and the next fetch
//! downloads it again. `dynatree fetch` and `dynatree run` both go through here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use super::lock::LockedFile;
use super::{fetch_hub_file, sha256_file, DataError, HubMismatch};
use crate::manifest::DatasetSource;
use crate::model::HubSettings;

/// A dataset file on local disk whose checksum matched the manifest's pin (when it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFile {
    pub local: PathBuf,
    /// What the lock records about it.
    pub locked: LockedFile,
    /// False for a hub file the manifest lists unpinned: only the lock can vouch for its bytes.
    pub pinned_by_manifest: bool,
}

/// Fetches (hub) or locates (local) every file of a dataset and checks it against its pin; the
/// first failure ends it. Every hub file must be pinned by now (the manifest's pins completed by
/// [`super::lock::Lock::pin`]): bytes nobody pinned are never measured.
pub fn dataset_files(
    source: &DatasetSource,
    hub: &HubSettings,
) -> Result<Vec<DatasetFile>, DataError> {
    if let DatasetSource::Hub { .. } = source {
        hub_pins(source)?;
    }
    each_dataset_file(source, hub).into_iter().collect()
}

/// A hub dataset's files with their pins; a file still unpinned is an error.
pub fn hub_pins(source: &DatasetSource) -> Result<BTreeMap<String, String>, DataError> {
    let DatasetSource::Hub {
        hub: repo,
        revision,
        files,
    } = source
    else {
        return Ok(BTreeMap::new());
    };
    files
        .iter()
        .map(|(file, pin)| match pin {
            Some(pin) => Ok((file.clone(), pin.clone())),
            None => Err(DataError::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
                file: file.clone(),
                message: "pinned neither by the manifest nor by the lock; run `dynatree fetch --update-lock` to trust it on first use".into(),
            }),
        })
        .collect()
}

/// Like [`dataset_files`], but goes on after a failure, gives every file's outcome and fetches
/// unpinned hub files without a check (`dynatree fetch` decides what the lock makes of them).
pub fn each_dataset_file(
    source: &DatasetSource,
    hub: &HubSettings,
) -> Vec<Result<DatasetFile, DataError>> {
    match source {
        DatasetSource::Path { path, sha256 } => vec![local_file(path, sha256.as_deref())],
        DatasetSource::Hub {
            hub: repo,
            revision,
            files,
        } => files
            .iter()
            .map(|(file, expected)| fetch_verified(repo, revision, file, expected.as_deref(), hub))
            .collect(),
    }
}

fn local_file(path: &Path, expected: Option<&str>) -> Result<DatasetFile, DataError> {
    let actual = sha256_file(path)?;
    if let Some(expected) = expected {
        if expected.strip_prefix("sha256:") != Some(actual.as_str()) {
            return Err(DataError::Checksum {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok(DatasetFile {
        local: path.to_path_buf(),
        pinned_by_manifest: expected.is_some(),
        locked: LockedFile {
            repo: None,
            revision: None,
            commit: None,
            path: path.display().to_string(),
            size: file_size(path)?,
            sha256: format!("sha256:{actual}"),
        },
    })
}

/// One hub dataset file, downloaded when missing and checked against `expected`
/// (`sha256:<hex>`) when there is one; on mismatch it is evicted from the cache and the error
/// names the file and both hashes.
pub fn fetch_verified(
    repo: &str,
    revision: &str,
    file: &str,
    expected: Option<&str>,
    hub: &HubSettings,
) -> Result<DatasetFile, DataError> {
    let local = fetch_hub_file(repo, revision, file, hub)?;
    let actual = sha256_file(&local)?;
    if let Some(expected) = expected.filter(|e| e.strip_prefix("sha256:") != Some(actual.as_str()))
    {
        let removed = evict(&local);
        return Err(DataError::HubChecksum(Box::new(HubMismatch {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
            expected: expected.to_string(),
            actual,
            removed: removed.map_or_else(
                |e| format!("could not remove it from the cache: {e}"),
                |()| "removed it from the cache".to_string(),
            ),
        })));
    }
    let hub_repo = Repo::with_revision(repo.to_string(), RepoType::Dataset, revision.to_string());
    let snapshots = hub.cache_dir.join(hub_repo.folder_name()).join("snapshots");
    let commit = local
        .strip_prefix(&snapshots)
        .ok()
        .and_then(|rest| rest.components().next())
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    Ok(DatasetFile {
        pinned_by_manifest: expected.is_some(),
        locked: LockedFile {
            repo: Some(repo.to_string()),
            revision: Some(revision.to_string()),
            commit,
            path: file.to_string(),
            size: file_size(&local)?,
            sha256: format!("sha256:{actual}"),
        },
        local,
    })
}

/// Removes a cached hub file: the snapshot entry and, when it is a link, the blob it points to.
pub fn evict(snapshot_entry: &Path) -> std::io::Result<()> {
    let is_link = std::fs::symlink_metadata(snapshot_entry)?
        .file_type()
        .is_symlink();
    let blob = if is_link {
        std::fs::canonicalize(snapshot_entry).ok()
    } else {
        None
    };
    std::fs::remove_file(snapshot_entry)?;
    if let Some(blob) = blob {
        match std::fs::remove_file(&blob) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn file_size(path: &Path) -> Result<u64, DataError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn eviction_removes_the_entry_and_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let snap = dir.path().join("snapshots/c1/sub");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(blobs.join("etag"), "bad").unwrap();
        std::os::unix::fs::symlink("../../../blobs/etag", snap.join("f.parquet")).unwrap();
        assert_eq!(
            std::fs::read_to_string(snap.join("f.parquet")).unwrap(),
            "bad"
        );
        evict(&snap.join("f.parquet")).unwrap();
        assert!(!blobs.join("etag").exists());
        assert!(std::fs::symlink_metadata(snap.join("f.parquet")).is_err());
    }

    #[test]
    fn a_local_file_is_checked_against_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        std::fs::write(&path, "abc").unwrap();
        let hub = HubSettings::from_vars(|_| None);
        let good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let source = |sha: Option<&str>| DatasetSource::Path {
            path: path.clone(),
            sha256: sha.map(str::to_string),
        };
        let files = dataset_files(&source(Some(good)), &hub).unwrap();
        assert_eq!(files[0].locked.size, 3);
        assert_eq!(files[0].locked.sha256, good);
        assert_eq!(files[0].locked.repo, None);
        assert!(dataset_files(&source(None), &hub).is_ok());
        let msg = dataset_files(&source(Some("sha256:00")), &hub)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("t.txt") && msg.contains("sha256:00") && msg.contains("ba7816"));
    }
}
