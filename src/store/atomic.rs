//! Crash-safe file replacement and the clean-up of what a crash leaves behind.
//!
//! A result is written to a temp file beside its target and renamed over it: rename within a
//! directory is atomic on POSIX file systems, so readers (and a machine that loses power) see the
//! old file or the new one, never a mix. The temp name carries the writer's pid, so a later
//! `Store::open` can tell the leftovers of dead writers from files still being written.

use super::StoreError;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temp files of concurrent writes from threads of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

const TEMP_MARK: &str = ".tmp-";

/// Writes `bytes` to `path` atomically: temp file in the same dir, write, fsync, rename over
/// `path`, fsync the dir. A crash at any moment leaves either the old file or the new one, never
/// a partial one (a crash may leave a temp file, which `Store::open` removes).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    let tmp = temp_path(path)?;
    if let Err(e) = write_temp_and_rename(&tmp, path, bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Without this the rename itself may not survive a power loss.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("cannot fsync directory", dir, e))
}

/// [`write_atomic`] unless `path` already holds exactly `bytes`: regenerating unchanged output
/// touches nothing (timestamps stay, so make and LaTeX see no change). True when written.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

fn write_temp_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| StoreError::io("cannot create", tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("cannot write", tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| StoreError::io("cannot rename temp file over", path, e))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `<dir>/.<name>.tmp-<pid>-<n>`: hidden, unique, and naming the process that owns it.
fn temp_path(path: &Path) -> Result<PathBuf, StoreError> {
    let name = path.file_name().ok_or_else(|| StoreError::InvalidPath {
        path: path.to_path_buf(),
        reason: "has no file name".into(),
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!("{TEMP_MARK}{}-{n}", std::process::id()));
    Ok(parent_dir(path).join(tmp))
}

/// The pid in a temp file name made by `temp_path`, or None for any other name.
pub(crate) fn temp_owner(file_name: &str) -> Option<i32> {
    let rest = file_name.strip_prefix('.')?;
    let (target, suffix) = rest.rsplit_once(TEMP_MARK)?;
    let (pid, n) = suffix.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if target.is_empty() || !all_digits(pid) || !all_digits(n) {
        return None;
    }
    // pid 0 and negative pids address process groups in kill(2): never treat them as owners.
    pid.parse::<i32>().ok().filter(|&pid| pid > 0)
}

/// Whether process `pid` exists (EPERM: it does, but belongs to another user). A zombie counts
/// as alive until its parent reaps it.
pub(crate) fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temp files in `dir` whose writer is dead; returns how many.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<usize, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("cannot list", dir, e))?;
        let Some(pid) = entry.file_name().to_str().and_then(temp_owner) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            // Another process cleaning the same store got there first.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::io(
                    "cannot remove stale temp file",
                    &entry.path(),
                    e,
                ))
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_carry_the_pid_and_parse_back() {
        let tmp = temp_path(Path::new("/a/b/x.json")).unwrap();
        assert_eq!(tmp.parent(), Some(Path::new("/a/b")));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".x.json.tmp-"), "{name}");
        assert_eq!(temp_owner(name), Some(std::process::id() as i32));
        assert_ne!(
            temp_path(Path::new("x.json")).unwrap(),
            temp_path(Path::new("x.json")).unwrap()
        );
        assert_eq!(
            temp_path(Path::new("x.json")).unwrap().parent(),
            Some(Path::new("."))
        );
    }

    #[test]
    fn other_names_are_not_temp_files() {
        for name in [
            "x.json",
            ".x.json",
            "x.json.tmp-12-3",
            ".x.json.tmp-12",
            ".x.json.tmp-ab-3",
            ".x.json.tmp-12-",
            ".x.json.tmp-0-1",
            ".x.json.tmp--5-1",
            "..tmp-12-3",
            ".x.json.tmp-99999999999-1",
        ] {
            assert_eq!(temp_owner(name), None, "{name}");
        }
        assert_eq!(temp_owner(".a.tmp-b.tmp-77-0"), Some(77));
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id() as i32));
    }
}
