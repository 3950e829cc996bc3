//! `dynatree submit --slurm` against a real one-node Slurm cluster that the test starts itself
//! (munged, slurmctld and slurmd as its own processes, its own slurm.conf, free ports, state in
//! a temp dir), plus the parts of `submit` that need no cluster.
//!
//! Needs Debian's slurmctld, slurmd, slurm-client and munge (`.ci/run` installs them). Nothing is
//! skipped: a missing program or a cluster that does not come up fails the test with the reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{models_toml, ok, wikitext_validation_toml};

/// Daemons' usual homes, for a PATH without the sbin directories.
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

// ---- the cluster ----------------------------------------------------------------------------

fn find_program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed (PATH={path}): the Slurm test needs Debian's slurmctld, \
                 slurmd, slurm-client and munge packages (.ci/run installs them)"
            )
        })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The short host name: slurmctld only runs where `SlurmctldHost` names this machine.
fn short_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(rc, 0, "gethostname failed");
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).to_string();
    name.split('.').next().unwrap_or(&name).to_string()
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One controller and one node on 127.0.0.1, as processes this test owns: dropped, it cancels
/// its jobs and stops the daemons.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start() -> Cluster {
        for program in ["sbatch", "squeue", "scontrol", "sinfo", "scancel"] {
            find_program(program);
        }
        // /tmp, not TMPDIR: a socket path must be short, and munged refuses a socket below a
        // directory that others cannot search.
        let dir = tempfile::tempdir_in("/tmp").expect("temp dir in /tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut cluster = Cluster {
            conf: dir.path().join("slurm.conf"),
            dir,
            daemons: Vec::new(),
        };
        for sub in ["run", "log", "state", "spool"] {
            fs::create_dir_all(cluster.path(sub)).unwrap();
        }
        cluster.start_munge();
        fs::write(&cluster.conf, cluster.config()).unwrap();
        let conf = cluster.conf.display().to_string();
        cluster.spawn("slurmctld", &["-D", "-i", "-f", &conf]);
        cluster.spawn("slurmd", &["-D", "-f", &conf, "-N", &short_hostname()]);
        cluster.wait_until("the node is idle", Duration::from_secs(90), |c| {
            let out = c.command("sinfo").args(["-h", "-o", "%T"]).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
        });
        cluster
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// A fresh key (munged wants it private) and a munged on a socket of our own.
    fn start_munge(&mut self) {
        let key_dir = self.path("munge");
        fs::create_dir_all(&key_dir).unwrap();
        fs::set_permissions(&key_dir, fs::Permissions::from_mode(0o700)).unwrap();
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut File::open("/dev/urandom").unwrap(), &mut key).unwrap();
        let key_path = key_dir.join("munge.key");
        fs::write(&key_path, key).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        let arg = |flag: &str, path: PathBuf| format!("--{flag}={}", path.display());
        let args = [
            "-F".to_string(),
            arg("socket", self.munge_socket()),
            arg("key-file", key_path),
            arg("pid-file", self.path("run/munged.pid")),
            arg("log-file", self.path("log/munged.log")),
            arg("seed-file", key_dir.join("munged.seed")),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("munged", &args);
        self.wait_until("munged's socket exists", Duration::from_secs(20), |c| {
            c.munge_socket().exists()
        });
    }

    fn munge_socket(&self) -> PathBuf {
        self.path("run/munge.sock")
    }

    /// No cgroups, accounting or task binding: none of them work in an unprivileged container,
    /// and the test needs none. config_overrides: two CPUs whatever the machine has, so two
    /// array tasks can run at once.
    fn config(&self) -> String {
        let host = short_hostname();
        let user = user_name();
        let p = |relative: &str| self.path(relative).display().to_string();
        format!(
            "ClusterName=dynatree-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={run}/slurmctld.pid
SlurmdPidFile={run}/slurmd.pid
SlurmctldLogFile={log}/slurmctld.log
SlurmdLogFile={log}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
",
            ctld_port = free_port(),
            slurmd_port = free_port(),
            socket = self.munge_socket().display(),
            state = p("state"),
            spool = p("spool"),
            run = p("run"),
            log = p("log"),
        )
    }

    fn spawn(&mut self, name: &'static str, args: &[&str]) {
        let out = File::create(self.path(&format!("log/{name}.out"))).unwrap();
        let child = Command::new(find_program(name))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push((name, child));
    }

    /// A Slurm client command aimed at this cluster.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(find_program(program));
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Polls `ready`; fails with every daemon's output when a daemon dies or time runs out.
    fn wait_until(&mut self, what: &str, limit: Duration, ready: impl Fn(&Cluster) -> bool) {
        let start = Instant::now();
        loop {
            if ready(self) {
                return;
            }
            let dead = self
                .daemons
                .iter_mut()
                .find_map(|(name, child)| Some((*name, child.try_wait().ok()??)));
            if let Some((name, status)) = dead {
                panic!(
                    "the Slurm cluster did not start: {name} exited ({status}) before {what}\n{}",
                    self.logs()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "the Slurm cluster did not start: waited {limit:?} for {what}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The tail of every daemon log, for failure messages.
    fn logs(&self) -> String {
        let mut text = String::new();
        let mut names: Vec<PathBuf> = fs::read_dir(self.path("log"))
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        names.sort();
        for path in names {
            let content = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            text.push_str(&format!("== {}\n{tail}\n", path.display()));
        }
        text
    }

    /// Every line of `scontrol show job -o ID` (one per array task) as key → value.
    fn jobs(&self, id: &str) -> Vec<BTreeMap<String, String>> {
        let out = self
            .command("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .expect("scontrol runs");
        assert!(
            out.status.success(),
            "scontrol show job {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                line.split_whitespace()
                    .filter_map(|field| field.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    /// Waits until every job (and array task) of `ids` has ended.
    fn wait_for_jobs(&self, ids: &[&str], limit: Duration) {
        let start = Instant::now();
        let ended = |job: &BTreeMap<String, String>| {
            let state = job.get("JobState").map_or("", String::as_str);
            !matches!(
                state,
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
            )
        };
        while !ids.iter().all(|id| self.jobs(id).iter().all(ended)) {
            if start.elapsed() > limit {
                let queue = self.command("squeue").output().expect("squeue runs");
                panic!(
                    "jobs {ids:?} still not done after {limit:?}\n{}\n{}",
                    String::from_utf8_lossy(&queue.stdout),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test may leave tasks running: they must not outlive the cluster. Without a
        // controller the clients would only retry until they time out.
        let controller = self
            .daemons
            .iter_mut()
            .any(|(name, child)| *name == "slurmctld" && matches!(child.try_wait(), Ok(None)));
        if controller {
            let _ = self
                .command("scancel")
                .arg(format!("--user={}", user_name()))
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while controller && Instant::now() < deadline {
            let queue = self.command("squeue").args(["-h"]).output();
            if queue.is_ok_and(|o| o.stdout.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- the sweep ------------------------------------------------------------------------------

/// Three runs (AR, linear k=2, one tree) on one prompt, 16 tokens, no warm-up: seconds each.
fn write_manifest(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[experiment]
name = "slurm"
seed = 1
repeats = 1
warmup = 0

{models}
{wikitext}
[prompts]
count = 1
max_chars = 200

[generation]
max_new_tokens = 16
stop_at_eos = false

[sweep]
dataset = ["wikitext2"]
method = ["ar", "linear", "fixed_tree"]

[sweep.linear]
k = [2]

[sweep.fixed_tree]
depth = [3]
branch = [2]
tau = [0.0]
max_nodes = [8]
"#,
        models = models_toml(),
        wikitext = wikitext_validation_toml(),
    );
    common::write_manifest(dir, "slurm.toml", &text)
}

fn dynatree(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = common::dynatree();
    cmd.args(args)
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .env("HF_HUB_CACHE", dir.join("hub"));
    cmd
}

fn planned_ids(dir: &Path, manifest: &str) -> Vec<String> {
    common::plan_ids(dynatree(dir, &["plan", manifest]))
}

fn stored_ids(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir.join("artifacts/runs"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_suffix(".json").map(str::to_string)
        })
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// The job id on the stdout line starting with `prefix` ("array job 12: ...").
fn job_id(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split([':', ' ']).next())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no {prefix:?}<id> line in:\n{stdout}"))
        .to_string()
}

/// Submits, waits for the array and its report job, and returns (array tasks, report job).
fn submit_and_wait(
    cluster: &Cluster,
    dir: &Path,
    manifest: &str,
) -> (Vec<BTreeMap<String, String>>, BTreeMap<String, String>) {
    let sbatch_dir = find_program("sbatch").parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(sbatch_dir).chain(std::env::split_paths(&std::env::var("PATH").unwrap())),
    )
    .unwrap();
    let args = [
        "submit",
        manifest,
        "--slurm",
        "--cpus-per-task",
        "1",
        "--max-parallel",
        "2",
    ];
    let out = dynatree(dir, &args)
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = ok(out);
    let (array, report) = (
        job_id(&stdout, "array job "),
        job_id(&stdout, "report job "),
    );
    cluster.wait_for_jobs(&[&array, &report], Duration::from_secs(600));
    let tasks = cluster.jobs(&array);
    let report = cluster.jobs(&report).remove(0);
    (tasks, report)
}

fn assert_succeeded(job: &BTreeMap<String, String>, log: &Path) {
    assert_eq!(
        (job["JobState"].as_str(), job["ExitCode"].as_str()),
        ("COMPLETED", "0:0"),
        "job {} did not succeed; its log {}:\n{}",
        job["JobId"],
        log.display(),
        fs::read_to_string(log).unwrap_or_else(|e| format!("(unreadable: {e})"))
    );
}

fn task_log(dir: &Path, task: &BTreeMap<String, String>) -> PathBuf {
    dir.join(format!(
        "artifacts/slurm/dynatree-slurm-{}_{}.log",
        task["ArrayJobId"], task["ArrayTaskId"]
    ))
}

#[test]
fn a_sweep_runs_as_a_job_array_and_reports() {
    let cluster = Cluster::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = write_manifest(dir);
    let manifest = manifest.to_str().unwrap();
    let planned = planned_ids(dir, manifest);
    assert_eq!(planned.len(), 3);

    let (tasks, report) = submit_and_wait(&cluster, dir, manifest);
    assert_eq!(tasks.len(), 3, "one array task per pending run: {tasks:?}");
    for task in &tasks {
        assert_succeeded(task, &task_log(dir, task));
    }
    // Exactly the ids a local `run` produces, every one verifying.
    assert_eq!(stored_ids(dir), planned.iter().cloned().collect());
    let verify = ok(dynatree(dir, &["verify"]).output().unwrap());
    assert!(verify.contains("3 results verify, 0 problems"), "{verify}");
    let status = ok(dynatree(dir, &["status", manifest]).output().unwrap());
    assert!(
        status.contains("3 done, 0 failed, 0 tampered, 0 pending"),
        "{status}"
    );
    let report_log = dir.join(format!(
        "artifacts/slurm/dynatree-slurm-report-{}.log",
        report["JobId"]
    ));
    assert_succeeded(&report, &report_log);
    let table = dir.join("artifacts/report/tables/main.tex");
    assert!(
        table.is_file(),
        "the report job wrote no {}",
        table.display()
    );

    // A run that never finished (its task died) is pending again: only it is resubmitted.
    let lost = &planned[1];
    fs::remove_file(dir.join(format!("artifacts/runs/{lost}.json"))).unwrap();
    let (tasks, report) = submit_and_wait(&cluster, dir, manifest);
    assert_eq!(
        tasks.len(),
        1,
        "only the lost run is resubmitted: {tasks:?}"
    );
    assert_succeeded(&tasks[0], &task_log(dir, &tasks[0]));
    let script = fs::read_to_string(dir.join("artifacts/slurm/dynatree-slurm-array.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=0%2\n"), "{script}");
    assert!(
        script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/1\""),
        "{script}"
    );
    assert_eq!(stored_ids(dir), planned.iter().cloned().collect());
    ok(dynatree(dir, &["verify"]).output().unwrap());
    assert_eq!(report["JobState"], "COMPLETED");

    // Nothing pending: nothing is submitted.
    let again = ok(dynatree(dir, &["submit", manifest, "--slurm"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap());
    assert!(again.starts_with("nothing to submit"), "{again}");
}

// ---- without a cluster ----------------------------------------------------------------------

#[test]
fn dry_run_writes_and_prints_the_scripts_without_sbatch() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = write_manifest(dir);
    let args = [
        "submit",
        manifest.to_str().unwrap(),
        "--slurm",
        "--dry-run",
        "--partition",
        "gpu",
        "--gpus-per-task",
        "1",
        "--time",
        "01:00:00",
    ];
    let out = ok(dynatree(dir, &args)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap());
    let artifacts = fs::canonicalize(dir.join("artifacts")).unwrap();
    let array = artifacts.join("slurm/dynatree-slurm-array.sh");
    let script = fs::read_to_string(&array).unwrap();
    assert!(out.contains(&script), "{out}");
    assert!(out.contains(&format!("# sbatch --parsable {}", array.display())));
    assert!(
        out.contains("--dependency=afterany:<array job id>"),
        "{out}"
    );
    for line in [
        "#SBATCH --array=0-2\n".to_string(),
        "#SBATCH --partition=gpu\n".to_string(),
        "#SBATCH --gpus-per-task=1\n".to_string(),
        format!(
            "#SBATCH --output={}/slurm/dynatree-slurm-%A_%a.log\n",
            artifacts.display()
        ),
        format!("'{}' run ", env!("CARGO_BIN_EXE_dynatree")),
    ] {
        assert!(script.contains(&line), "missing {line:?} in\n{script}");
    }
    let report = fs::read_to_string(artifacts.join("slurm/dynatree-slurm-report.sh")).unwrap();
    assert!(report.contains(" aggregate --artifacts "), "{report}");
    assert!(!report.contains("gpus"), "{report}");
}

#[test]
fn missing_sbatch_is_a_clear_error() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let manifest = write_manifest(dir);
    let out = dynatree(dir, &["submit", manifest.to_str().unwrap(), "--slurm"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sbatch was not found on PATH (/nonexistent)"),
        "{stderr}"
    );
}
