//! Where and with what a run was measured.

use std::process::Command;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub dynatree_version: String,
    pub rustc_version: String,
    pub candle_version: String,
    pub os: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub gpu: Option<String>,
    pub start_time: String,
    pub end_time: String,
}

impl Provenance {
    /// Everything but the end time, which [`Provenance::finish`] sets.
    pub fn start(cuda: bool) -> Self {
        let (git_commit, git_dirty) = git_state();
        Self {
            git_commit,
            git_dirty,
            dynatree_version: env!("CARGO_PKG_VERSION").into(),
            rustc_version: env!("DYNATREE_RUSTC_VERSION").into(),
            candle_version: env!("DYNATREE_CANDLE_VERSION").into(),
            os: os_description(),
            cpu_model: cpu_model(),
            cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gpu: cuda.then(gpu_description).flatten(),
            start_time: utc_now(),
            end_time: String::new(),
        }
    }

    pub fn finish(mut self) -> Self {
        self.end_time = utc_now();
        self
    }
}

/// The working tree's commit and whether tracked files differ from it (None outside git).
pub fn git_state() -> (Option<String>, Option<bool>) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]));
    (commit, dirty.map(|d| !d.is_empty()))
}

fn os_description() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        release.trim()
    )
    .trim()
    .to_string()
}

/// The CPU's marketing name from /proc/cpuinfo, or the architecture elsewhere.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// GPU name and driver as nvidia-smi reports them.
pub fn gpu_description() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// RFC 3339 UTC time with seconds, e.g. `2026-11-28T02:55:01Z`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_834_501), "2026-11-28T02:55:01Z");
    }
}
