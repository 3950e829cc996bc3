//! Clusters: a manifest's pending runs as a Slurm job array, and a dependent job that aggregates
//! and reports once every array task has ended.
//!
//! Array task `i` runs `dynatree run M --shard i/N`, which takes the planned runs whose position
//! in the plan is `i` mod `N`. Positions come from the grid alone (ids may differ between a login
//! node and a compute node, positions do not), so the submitting process and the tasks agree on
//! what each shard holds. `N` and the task list are chosen from the runs pending at submission:
//! a shard with nothing pending gets no task (the array may be sparse, `--array=1,4,7`), and the
//! pending runs are spread so that the busiest task has as few as possible. A task skips what is
//! done by the time it starts, and the per-run locks keep tasks of overlapping submissions from
//! running a run twice, so a task that dies leaves its runs pending for the next `submit`.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::store::{self, StoreError};

/// Shards at most: Slurm's default `MaxArraySize` (1001) allows task ids 0..=1000.
pub const MAX_SHARDS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("sbatch was not found on PATH ({path}): install the Slurm client (Debian: slurm-client), submit from a login node, or use --dry-run to only write the scripts")]
    NoSbatch { path: String },
    #[error("cannot run sbatch for {}: {source}", script.display())]
    Spawn {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sbatch {} failed ({status}): {}", script.display(), stderr.trim())]
    Sbatch {
        script: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("sbatch {} printed {output:?}; expected a job id (`ID` or `ID;CLUSTER` with --parsable)", script.display())]
    JobId { script: PathBuf, output: String },
    #[error("--{option} {value:?}: {reason}")]
    Option {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What each job asks Slurm for; `None` leaves it to the cluster's defaults.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct SlurmOptions {
    /// Slurm partition (sbatch --partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// GPUs per array task (sbatch --gpus-per-task).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPUs per array task (sbatch --cpus-per-task).
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per node, as sbatch takes it (e.g. 32G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Time limit per job, as sbatch takes it (e.g. 04:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// At most K array tasks at once (`%K`).
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    /// At most this many array tasks [default: one per pending run, at most 1000].
    #[arg(long)]
    pub tasks: Option<usize>,
}

impl SlurmOptions {
    /// Refuses values that would break the `#SBATCH` lines they are written into.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let texts = [
            ("partition", &self.partition),
            ("mem", &self.mem),
            ("time", &self.time),
        ];
        for (option, value) in texts {
            if let Some(value) = value {
                if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ClusterError::Option {
                        option,
                        value: value.clone(),
                        reason: "expected a non-empty value without spaces",
                    });
                }
            }
        }
        let counts = [
            ("gpus-per-task", self.gpus_per_task.map(|n| n as usize)),
            ("cpus-per-task", self.cpus_per_task.map(|n| n as usize)),
            ("max-parallel", self.max_parallel),
            ("tasks", self.tasks),
        ];
        for (option, value) in counts {
            if value == Some(0) {
                return Err(ClusterError::Option {
                    option,
                    value: "0".into(),
                    reason: "expected at least 1",
                });
            }
        }
        Ok(())
    }
}

/// How the planned runs are split: `shards` = N of `--shard i/N`, `tasks` = the shard indices
/// that hold pending runs (the array's task ids), `busiest` = pending runs of the fullest task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub shards: usize,
    pub tasks: Vec<usize>,
    pub busiest: usize,
}

/// Chooses N for pending runs at `pending` positions of a `total`-run plan: at most `max_tasks`
/// non-empty shards, the fewest pending runs in the busiest one, then the fewest tasks, then the
/// smallest N (small task ids). `pending` must be non-empty.
pub fn layout(pending: &[usize], total: usize, max_tasks: usize) -> Layout {
    assert!(!pending.is_empty(), "layout needs at least one pending run");
    let max_tasks = max_tasks.clamp(1, MAX_SHARDS);
    let best_busiest = pending.len().div_ceil(max_tasks);
    let mut best: Option<Layout> = None;
    for shards in 1..=total.clamp(1, MAX_SHARDS) {
        let mut counts = vec![0usize; shards];
        for &position in pending {
            counts[position % shards] += 1;
        }
        let tasks: Vec<usize> = (0..shards).filter(|&i| counts[i] > 0).collect();
        let busiest = counts.iter().copied().max().unwrap_or(0);
        if tasks.len() > max_tasks {
            continue;
        }
        let better = best
            .as_ref()
            .is_none_or(|b| (busiest, tasks.len()) < (b.busiest, b.tasks.len()));
        if better {
            let optimal = busiest == best_busiest && tasks.len() == pending.len().div_ceil(busiest);
            best = Some(Layout {
                shards,
                tasks,
                busiest,
            });
            // Nothing later can beat this, and a smaller N keeps task ids small.
            if optimal {
                break;
            }
        }
    }
    best.expect("one shard always fits")
}

/// Slurm's `--array` value: task ids as ranges (`0-3,7,9-10`), then `%K` when throttled.
pub fn array_spec(tasks: &[usize], max_parallel: Option<usize>) -> String {
    let mut spec = String::new();
    let mut i = 0;
    while i < tasks.len() {
        let start = tasks[i];
        while i + 1 < tasks.len() && tasks[i + 1] == tasks[i] + 1 {
            i += 1;
        }
        if !spec.is_empty() {
            spec.push(',');
        }
        match tasks[i] {
            end if end == start => write!(spec, "{start}"),
            end => write!(spec, "{start}-{end}"),
        }
        .expect("writing to a String");
        i += 1;
    }
    if let Some(k) = max_parallel {
        write!(spec, "%{k}").expect("writing to a String");
    }
    spec
}

/// Absolute paths the jobs use: they run on other machines, from another directory.
#[derive(Debug, Clone)]
pub struct JobPaths {
    pub exe: PathBuf,
    pub manifest: PathBuf,
    /// The dataset lock (it need not exist: a manifest that pins every file needs none).
    pub lock: PathBuf,
    pub artifacts: PathBuf,
    pub workdir: PathBuf,
}

impl JobPaths {
    /// This binary, the manifest, the lock and the artifacts directory (created), made absolute.
    pub fn resolve(
        manifest: &Path,
        lock: &Path,
        artifacts: &Path,
    ) -> Result<JobPaths, ClusterError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(artifacts).map_err(io("cannot create", artifacts))?;
        let cwd = Path::new(".");
        let workdir =
            std::env::current_dir().map_err(io("cannot read the current directory", cwd))?;
        Ok(JobPaths {
            exe: std::env::current_exe().map_err(io("cannot find this program's path", cwd))?,
            manifest: std::fs::canonicalize(manifest).map_err(io("cannot resolve", manifest))?,
            lock: workdir.join(lock),
            artifacts: std::fs::canonicalize(artifacts).map_err(io("cannot resolve", artifacts))?,
            workdir,
        })
    }

    /// Scripts and logs go here.
    pub fn slurm_dir(&self) -> PathBuf {
        self.artifacts.join("slurm")
    }
}

/// The two batch scripts of one submission.
#[derive(Debug, Clone)]
pub struct Job {
    /// `dynatree-<experiment>`: job name and file-name prefix.
    pub name: String,
    pub paths: JobPaths,
    pub layout: Layout,
    pub options: SlurmOptions,
}

impl Job {
    pub fn new(experiment: &str, paths: JobPaths, layout: Layout, options: SlurmOptions) -> Job {
        let safe: String = experiment
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Job {
            name: format!("dynatree-{safe}"),
            paths,
            layout,
            options,
        }
    }

    pub fn array_script_path(&self) -> PathBuf {
        self.paths
            .slurm_dir()
            .join(format!("{}-array.sh", self.name))
    }

    pub fn report_script_path(&self) -> PathBuf {
        self.paths
            .slurm_dir()
            .join(format!("{}-report.sh", self.name))
    }

    /// Task `i` of the array runs shard `i/N`.
    pub fn array_script(&self) -> String {
        let p = &self.paths;
        let mut s = header(&self.name, &self.options, &p.workdir);
        let array = array_spec(&self.layout.tasks, self.options.max_parallel);
        sbatch_line(&mut s, "array", &array);
        let log = p.slurm_dir().join(format!("{}-%A_%a.log", self.name));
        sbatch_line(&mut s, "output", &log.display().to_string());
        optional_line(&mut s, "gpus-per-task", self.options.gpus_per_task);
        optional_line(&mut s, "cpus-per-task", self.options.cpus_per_task);
        optional_line(&mut s, "mem", self.options.mem.as_ref());
        s.push_str("\nset -euo pipefail\n");
        if let Some(cpus) = self.options.cpus_per_task {
            // Without a task plugin binding CPUs, the compute pool would size itself to the node.
            writeln!(
                s,
                ": \"${{RAYON_NUM_THREADS:={cpus}}}\"\nexport RAYON_NUM_THREADS"
            )
            .expect("writing to a String");
        }
        writeln!(
            s,
            "# Shard i/{n}: the planned runs at positions i, i+{n}, ...; done ones are skipped.",
            n = self.layout.shards
        )
        .expect("writing to a String");
        writeln!(
            s,
            "exec {} run {} --lock {} --artifacts {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"",
            quote(&p.exe),
            quote(&p.manifest),
            quote(&p.lock),
            quote(&p.artifacts),
            self.layout.shards
        )
        .expect("writing to a String");
        s
    }

    /// Runs after every array task has ended, however it ended (`afterany`).
    pub fn report_script(&self) -> String {
        let p = &self.paths;
        let mut s = header(&format!("{}-report", self.name), &self.options, &p.workdir);
        let log = p.slurm_dir().join(format!("{}-report-%j.log", self.name));
        sbatch_line(&mut s, "output", &log.display().to_string());
        let (exe, artifacts) = (quote(&p.exe), quote(&p.artifacts));
        let manifest = format!("{} --lock {}", quote(&p.manifest), quote(&p.lock));
        let out = quote(&p.artifacts.join("report"));
        writeln!(
            s,
            "\nset -euo pipefail\n\
             {exe} status {manifest} --artifacts {artifacts}\n\
             {exe} aggregate --artifacts {artifacts}\n\
             {exe} report {manifest} --artifacts {artifacts} --out {out}"
        )
        .expect("writing to a String");
        s
    }

    /// Writes both scripts atomically under `artifacts/slurm/` (where the logs go too).
    pub fn write(&self) -> Result<(), ClusterError> {
        let dir = self.paths.slurm_dir();
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::Io {
            action: "cannot create",
            path: dir.clone(),
            source,
        })?;
        store::write_atomic(&self.array_script_path(), self.array_script().as_bytes())?;
        store::write_atomic(&self.report_script_path(), self.report_script().as_bytes())?;
        Ok(())
    }
}

/// Lines both jobs share; partition and time apply to the report job too.
fn header(name: &str, options: &SlurmOptions, workdir: &Path) -> String {
    let mut s = String::from("#!/bin/bash\n# Written by `dynatree submit --slurm`.\n");
    sbatch_line(&mut s, "job-name", name);
    sbatch_line(&mut s, "chdir", &workdir.display().to_string());
    // --gpus-per-task needs an explicit task count.
    sbatch_line(&mut s, "ntasks", "1");
    optional_line(&mut s, "partition", options.partition.as_ref());
    optional_line(&mut s, "time", options.time.as_ref());
    s
}

fn sbatch_line(s: &mut String, option: &str, value: &str) {
    writeln!(s, "#SBATCH --{option}={value}").expect("writing to a String");
}

fn optional_line(s: &mut String, option: &str, value: Option<impl std::fmt::Display>) {
    if let Some(value) = value {
        sbatch_line(s, option, &value.to_string());
    }
}

/// Single-quoted for bash, so paths with spaces or `$` stay one literal word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The sbatch arguments for `script`, after the array job `after` when given.
pub fn sbatch_args(script: &Path, after: Option<&str>) -> Vec<String> {
    let mut args = vec!["--parsable".to_string()];
    if let Some(job) = after {
        args.push(format!("--dependency=afterany:{job}"));
    }
    args.push(script.display().to_string());
    args
}

/// Submits `script` with sbatch and returns its job id.
pub fn sbatch(script: &Path, after: Option<&str>) -> Result<String, ClusterError> {
    let output = Command::new("sbatch")
        .args(sbatch_args(script, after))
        .output()
        .map_err(|source| match source.kind() {
            ErrorKind::NotFound => ClusterError::NoSbatch {
                path: std::env::var("PATH").unwrap_or_default(),
            },
            _ => ClusterError::Spawn {
                script: script.to_path_buf(),
                source,
            },
        })?;
    if !output.status.success() {
        return Err(ClusterError::Sbatch {
            script: script.to_path_buf(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_job_id(&stdout).ok_or_else(|| ClusterError::JobId {
        script: script.to_path_buf(),
        output: stdout.into_owned(),
    })
}

/// The job id from `sbatch --parsable` output: `ID` or `ID;CLUSTER` on the last line.
pub fn parse_job_id(output: &str) -> Option<String> {
    let line = output.lines().rev().find(|l| !l.trim().is_empty())?;
    let id = line.trim().split(';').next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> JobPaths {
        JobPaths {
            exe: "/opt/bin/dynatree".into(),
            manifest: "/home/me/exp/it's.toml".into(),
            lock: "/home/me/datasets/lock.toml".into(),
            artifacts: "/scratch/art".into(),
            workdir: "/home/me".into(),
        }
    }

    #[test]
    fn a_fresh_sweep_gets_one_task_per_run() {
        let pending: Vec<usize> = (0..12).collect();
        let layout = layout(&pending, 12, 12);
        assert_eq!(layout.shards, 12);
        assert_eq!(layout.tasks, pending);
        assert_eq!(layout.busiest, 1);
    }

    #[test]
    fn fewer_tasks_share_the_runs_evenly() {
        let pending: Vec<usize> = (0..12).collect();
        let layout = layout(&pending, 12, 4);
        assert_eq!((layout.shards, layout.busiest), (4, 3));
        assert_eq!(layout.tasks, vec![0, 1, 2, 3]);
    }

    #[test]
    fn only_shards_with_pending_runs_get_tasks() {
        // Mod 2 and 3 two of them share a shard; mod 4 they fall in shards 3, 1 and 2.
        let pending = [3, 17, 42];
        assert_eq!(
            layout(&pending, 50, 3),
            Layout {
                shards: 4,
                tasks: vec![1, 2, 3],
                busiest: 1
            }
        );
        // One pending run left: one task, shard 0/1.
        assert_eq!(
            super::layout(&[7], 50, 8),
            Layout {
                shards: 1,
                tasks: vec![0],
                busiest: 1
            }
        );
    }

    #[test]
    fn big_grids_stay_within_slurms_array_limit() {
        let pending: Vec<usize> = (0..5000).collect();
        let layout = layout(&pending, 5000, 5000);
        assert_eq!(layout.shards, MAX_SHARDS);
        assert_eq!(layout.busiest, 5);
        assert_eq!(*layout.tasks.last().unwrap(), MAX_SHARDS - 1);
    }

    #[test]
    fn array_specs_are_ranges_and_throttle() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[0, 1, 2, 3], Some(2)), "0-3%2");
        assert_eq!(array_spec(&[1, 3, 4, 5, 9], None), "1,3-5,9");
        assert_eq!(array_spec(&[7], Some(1)), "7%1");
    }

    #[test]
    fn the_array_script_runs_its_shard_with_absolute_paths() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            cpus_per_task: Some(8),
            mem: Some("32G".into()),
            time: Some("04:00:00".into()),
            max_parallel: Some(2),
            tasks: None,
        };
        let layout = layout(&[0, 1, 2, 3, 4], 5, 5);
        let job = Job::new("paper main", paths(), layout, options);
        let script = job.array_script();
        for line in [
            "#!/bin/bash\n",
            "#SBATCH --job-name=dynatree-paper_main\n",
            "#SBATCH --array=0-4%2\n",
            "#SBATCH --output=/scratch/art/slurm/dynatree-paper_main-%A_%a.log\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --gpus-per-task=1\n",
            "#SBATCH --cpus-per-task=8\n",
            "#SBATCH --mem=32G\n",
            "#SBATCH --time=04:00:00\n",
            "#SBATCH --ntasks=1\n",
            "#SBATCH --chdir=/home/me\n",
            "export RAYON_NUM_THREADS\n",
            "exec '/opt/bin/dynatree' run '/home/me/exp/it'\\''s.toml' --lock '/home/me/datasets/lock.toml' --artifacts '/scratch/art' --shard \"${SLURM_ARRAY_TASK_ID}/5\"\n",
        ] {
            assert!(script.contains(line), "missing {line:?} in\n{script}");
        }
        assert_eq!(
            job.array_script_path(),
            Path::new("/scratch/art/slurm/dynatree-paper_main-array.sh")
        );
    }

    #[test]
    fn the_report_script_aggregates_then_reports_without_gpus() {
        let options = SlurmOptions {
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            mem: Some("32G".into()),
            ..SlurmOptions::default()
        };
        let job = Job::new("tiny", paths(), layout(&[0], 1, 1), options);
        let script = job.report_script();
        assert!(
            script.contains("#SBATCH --output=/scratch/art/slurm/dynatree-tiny-report-%j.log\n")
        );
        assert!(script.contains("#SBATCH --partition=gpu\n"));
        assert!(
            !script.contains("gpus") && !script.contains("--mem") && !script.contains("--array")
        );
        let aggregate = script.find("'/opt/bin/dynatree' aggregate --artifacts '/scratch/art'\n");
        let report = script.find(
            "'/opt/bin/dynatree' report '/home/me/exp/it'\\''s.toml' --lock '/home/me/datasets/lock.toml' --artifacts '/scratch/art' --out '/scratch/art/report'\n",
        );
        assert!(
            aggregate.is_some() && report.is_some() && aggregate < report,
            "{script}"
        );
    }

    #[test]
    fn the_report_job_waits_for_every_array_task() {
        let args = sbatch_args(Path::new("/a/r.sh"), Some("42"));
        assert_eq!(args, ["--parsable", "--dependency=afterany:42", "/a/r.sh"]);
        assert_eq!(
            sbatch_args(Path::new("/a/x.sh"), None),
            ["--parsable", "/a/x.sh"]
        );
    }

    #[test]
    fn job_ids_parse_from_parsable_output() {
        assert_eq!(parse_job_id("123\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("123;cluster\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("warning: x\n77\n").as_deref(), Some("77"));
        assert_eq!(parse_job_id("Submitted batch job 5\n"), None);
        assert_eq!(parse_job_id(""), None);
    }

    #[test]
    fn options_that_would_break_the_script_are_refused() {
        let bad = SlurmOptions {
            time: Some("1:00\n#SBATCH --x".into()),
            ..SlurmOptions::default()
        };
        let message = bad.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("--time \"1:00\\n#SBATCH --x\""),
            "{message}"
        );
        let zero = SlurmOptions {
            max_parallel: Some(0),
            ..SlurmOptions::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "--max-parallel \"0\": expected at least 1"
        );
        assert!(SlurmOptions::default().validate().is_ok());
    }
}
