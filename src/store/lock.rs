//! Per-run locks, so two processes sharing an artifacts directory never run the same config.
//!
//! flock(2) locks belong to the open file description and vanish when the last descriptor to it
//! closes, which the kernel does for a dead process too (kill -9 included): a crashed run cannot
//! leave a lock behind. Lock files are never deleted, since unlinking a lock file while another
//! process has it open would let a third process lock a fresh file of the same name.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Holds a run's lock until dropped. Std opens files with `O_CLOEXEC`, so child processes a run
/// spawns do not inherit (and prolong) the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes an exclusive lock on `path` (created if absent) without blocking; None when another
    /// open file description holds it, in this process or another.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<RunLock>, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io("cannot open lock file", path, e))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let path = path.to_path_buf();
                return Ok(Some(RunLock { file, path }));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(StoreError::io("cannot lock", path, err)),
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Closing the file (right after) would release it anyway; unlocking first makes the
        // release explicit even if a descriptor was somehow duplicated.
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}
