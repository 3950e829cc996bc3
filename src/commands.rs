//! Command handlers: the edge between the parsed command line and the stages, printing for
//! people (or JSON) and turning failures into exit codes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::bench::runner::{self, short, RunOptions};
use crate::bench::{self, PlannedRun};
use crate::data::lock::{Lock, Recorded};
use crate::data::{self, DataError};
use crate::manifest::{self, Manifest, ModelRef};
use crate::model::{HubSettings, ModelFiles, ModelSource};
use crate::store::Store;

fn load(path: &Path) -> Result<Manifest> {
    Ok(manifest::load(path)?)
}

fn planned(manifest: &Manifest, artifacts: &Path) -> Result<Vec<PlannedRun>> {
    bench::plan(manifest, artifacts, &HubSettings::from_env()).context("planning runs")
}

/// `dynatree check`: validates a manifest and its grid without running anything.
pub fn check(path: &Path) -> Result<ExitCode> {
    let manifest = load(path)?;
    let points = crate::grid::expand(&manifest)?;
    println!("{}: ok, {} runs", path.display(), points.len());
    Ok(ExitCode::SUCCESS)
}

/// `dynatree plan`: the expanded grid with ids, in run order.
pub fn plan(path: &Path, artifacts: &Path, as_json: bool) -> Result<ExitCode> {
    let manifest = load(path)?;
    for run in planned(&manifest, artifacts)? {
        if as_json {
            let line = json!({"id": run.id, "dataset": run.point.dataset, "method": run.point.method.name(), "params": run.point.method.params()});
            println!("{line}");
        } else {
            println!("{}  {}", run.id, run.label());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynatree run`.
pub fn run(path: &Path, artifacts: &Path, options: RunOptions) -> Result<ExitCode> {
    let manifest = load(path)?;
    let store = Store::open(artifacts)?;
    let all = planned(&manifest, artifacts)?;
    let (pending, done) = runner::select(all, &options, &store);
    let force = options.force;
    if pending.is_empty() {
        println!("nothing to do: {done} runs already done");
        return Ok(ExitCode::SUCCESS);
    }
    let hub = HubSettings::from_env();
    let report = runner::run(&manifest, pending, &store, &hub, force)?;
    println!(
        "{} done now, {done} done before, {} running elsewhere, {} failed",
        report.completed.len(),
        report.skipped_locked.len(),
        report.failed.len()
    );
    if !report.not_lossless.is_empty() {
        eprintln!(
            "error: {} runs are NOT lossless (their output differs from AR):",
            report.not_lossless.len()
        );
        for id in &report.not_lossless {
            eprintln!("  {id}");
        }
    }
    if report.interrupted {
        eprintln!("interrupted: finished runs are kept; run again to continue");
        return Ok(ExitCode::from(130));
    }
    let failed = !report.failed.is_empty() || !report.not_lossless.is_empty();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `dynatree fetch`: downloads every hub dataset file and hub model of a manifest into the
/// Hugging Face cache, verifies dataset files against the manifest's pins and the lock, and
/// writes the lock (only when everything verified).
pub fn fetch(path: &Path, lock_path: &Path, update_lock: bool) -> Result<ExitCode> {
    let manifest = load(path)?;
    let hub = HubSettings::from_env();
    let mut lock = Lock::load(lock_path)?;
    let mut problems = Vec::new();
    for (name, spec) in &manifest.datasets {
        let mut files = Vec::new();
        for outcome in data::fetch::each_dataset_file(&spec.source, &hub) {
            match outcome {
                Ok(file) => files.push(file),
                Err(e) => {
                    let note = match &e {
                        DataError::Checksum { .. } | DataError::HubChecksum(_)
                            if update_lock =>
                        {
                            " (--update-lock only records new checksums in the lock; the manifest's pin must still match: change the manifest if the new bytes are intended)"
                        }
                        _ => "",
                    };
                    problems.push(format!("dataset {name}: {e}{note}"));
                }
            }
        }
        for file in files {
            let label = file.locked.name();
            let (size, sha) = (file.locked.size, file.locked.sha256.clone());
            match lock.record(file.locked, update_lock, lock_path) {
                Ok(recorded) => {
                    let what = match recorded {
                        Recorded::Unchanged => "ok".to_string(),
                        Recorded::Added => "ok, added to the lock".to_string(),
                        Recorded::CommitChanged { from } => format!(
                            "ok, same bytes at a new commit (was {})",
                            from.as_deref().unwrap_or("none")
                        ),
                        Recorded::Updated { from } => {
                            format!("UPDATED in the lock (was {from})")
                        }
                    };
                    println!("dataset {name}: {label} {size} bytes {sha} {what}");
                }
                Err(e) => problems.push(format!("dataset {name}: {e}")),
            }
        }
    }
    let models = [
        Some(&manifest.models.target),
        manifest.models.draft.as_ref(),
    ];
    for model in models.into_iter().flatten() {
        if let ModelRef::Hub {
            hub: repo,
            revision,
        } = model
        {
            let source = ModelSource::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            };
            match ModelFiles::resolve(&source, &hub) {
                Ok(files) => println!(
                    "model {source}: commit {}, {} weight files",
                    files.commit.as_deref().unwrap_or("?"),
                    files.weights.len()
                ),
                Err(e) => problems.push(format!("model {source}: {e}")),
            }
        }
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("error: {problem}");
        }
        bail!(
            "{} problems; {} was not written",
            problems.len(),
            lock_path.display()
        );
    }
    let written = lock.save(lock_path)?;
    let what = if written { "wrote" } else { "unchanged:" };
    println!("{what} {}", lock_path.display());
    Ok(ExitCode::SUCCESS)
}

/// `dynatree prompts`: every dataset's prompts, built exactly as `run` builds them.
pub fn prompts(path: &Path, as_json: bool) -> Result<ExitCode> {
    let manifest = load(path)?;
    let hub = HubSettings::from_env();
    for (name, spec) in &manifest.datasets {
        let prompts =
            data::dataset_prompts(spec, &manifest.prompts, manifest.experiment.seed, &hub)
                .with_context(|| format!("dataset {name}"))?;
        if !as_json {
            println!("== {name} ({}): {} prompts", spec.label, prompts.len());
        }
        for (index, prompt) in prompts.iter().enumerate() {
            let chars = prompt.text.chars().count();
            if as_json {
                let line = json!({"dataset": name, "index": index, "sha256": prompt.sha256, "chars": chars, "text": prompt.text});
                println!("{line}");
            } else {
                println!("[{index}] sha256:{} {chars} chars", prompt.sha256);
                println!("{}\n", prompt.text);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynatree status`.
pub fn status(path: &Path, artifacts: &Path) -> Result<ExitCode> {
    let manifest = load(path)?;
    let store = Store::open(artifacts)?;
    let status = bench::status(planned(&manifest, artifacts)?, &store);
    println!(
        "{}: {} done, {} failed, {} pending",
        path.display(),
        status.done.len(),
        status.failed.len(),
        status.pending.len()
    );
    for (run, error) in &status.failed {
        println!("failed   {}  {}: {error}", short(&run.id), run.label());
    }
    for run in &status.pending {
        println!("pending  {}  {}", short(&run.id), run.label());
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynatree verify`: every stored result against its checksum and id.
pub fn verify(artifacts: &Path) -> Result<ExitCode> {
    let store = Store::open(artifacts)?;
    let problems = store.verify()?;
    let good = store.done_ids()?.len();
    for p in &problems {
        println!("BAD  {}: {}", p.path.display(), p.problem);
    }
    println!("{good} results verify, {} problems", problems.len());
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `dynatree aggregate`: every result into `summary.csv` and `per_prompt.csv`.
pub fn aggregate(artifacts: &Path) -> Result<ExitCode> {
    let store = Store::open(artifacts)?;
    let aggregate = crate::report::aggregate(&store)?;
    let changed = aggregate.write_csv(artifacts)?;
    println!(
        "{} runs, {} prompt rows in {} ({})",
        aggregate.summary.height(),
        aggregate.per_prompt.height(),
        artifacts.display(),
        if changed.is_empty() {
            "unchanged"
        } else {
            "written"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `dynatree report`: a manifest's tables, numbers, figures and appendix.
pub fn report(path: &Path, artifacts: &Path, out: &Path) -> Result<ExitCode> {
    let manifest = load(path)?;
    let written = crate::report::report(&manifest, artifacts, out)?;
    for file in &written.changed {
        println!("wrote {}", file.display());
    }
    println!(
        "{}: {} files, {} changed",
        out.display(),
        written.files.len(),
        written.changed.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `dynatree why`: which inputs make two runs differ.
pub fn why(left: &str, right: &str, artifacts: &Path) -> Result<ExitCode> {
    let store = Store::open(artifacts)?;
    let config = |prefix: &str| -> Result<(String, serde_json::Value)> {
        let id = resolve_id(&store, prefix)?;
        let path = store.result_path(&id);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok((id, value["config"].clone()))
    };
    let (left_id, left) = config(left)?;
    let (right_id, right) = config(right)?;
    let differences = bench::config_diff(&left, &right);
    if differences.is_empty() {
        println!(
            "{} and {} have the same inputs",
            short(&left_id),
            short(&right_id)
        );
    }
    for line in differences {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A full id from a unique prefix of a stored result's id.
fn resolve_id(store: &Store, prefix: &str) -> Result<String> {
    let ids: Vec<String> = std::fs::read_dir(store.root().join("runs"))
        .with_context(|| format!("reading {}", store.root().join("runs").display()))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .filter(|id| id.starts_with(prefix))
        .collect();
    match ids.as_slice() {
        [id] => Ok(id.clone()),
        [] => bail!(
            "no stored result has an id starting with {prefix:?} in {}",
            store.root().display()
        ),
        _ => bail!(
            "{prefix:?} matches {} results; give more characters",
            ids.len()
        ),
    }
}

/// Parses `--shard I/N`.
pub fn parse_shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("--shard {text:?}: expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .map_err(|_| format!("--shard {text:?}: I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("--shard {text:?}: N is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("--shard {text:?}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// `dynatree submit --slurm`: the runs not done yet as a Slurm job array (task i runs shard
/// i/N), then a job that aggregates and reports once every task has ended. With nothing pending
/// nothing is submitted: the report of a finished sweep is quicker to make where you are.
pub fn submit(
    path: &Path,
    artifacts: &Path,
    options: crate::cluster::SlurmOptions,
    dry_run: bool,
) -> Result<ExitCode> {
    use crate::cluster::{self, Job, JobPaths};
    options.validate()?;
    let manifest = load(path)?;
    let store = Store::open(artifacts)?;
    let all = planned(&manifest, artifacts)?;
    let pending: Vec<usize> = (0..all.len())
        .filter(|&i| !store.is_done(&all[i].id))
        .collect();
    let paths = JobPaths::resolve(path, artifacts)?;
    if pending.is_empty() {
        println!(
            "nothing to submit: all {} runs of {} are done; for the report run\n  dynatree aggregate --artifacts {a}\n  dynatree report {} --artifacts {a} --out {a}/report",
            all.len(),
            path.display(),
            paths.manifest.display(),
            a = paths.artifacts.display(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let max_tasks = options
        .tasks
        .unwrap_or(pending.len())
        .min(cluster::MAX_SHARDS);
    let layout = cluster::layout(&pending, all.len(), max_tasks);
    println!(
        "{} of {} runs pending: {} array tasks, shards i/{}, at most {} runs per task{}",
        pending.len(),
        all.len(),
        layout.tasks.len(),
        layout.shards,
        layout.busiest,
        options
            .max_parallel
            .map_or(String::new(), |k| format!(", {k} at once")),
    );
    let job = Job::new(&manifest.experiment.name, paths, layout, options);
    job.write()?;
    let (array, report) = (job.array_script_path(), job.report_script_path());
    if dry_run {
        for (script, after) in [(&array, None), (&report, Some("<array job id>"))] {
            let args = cluster::sbatch_args(script, after).join(" ");
            println!("\n# sbatch {args}\n{}", std::fs::read_to_string(script)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let array_id = cluster::sbatch(&array, None)?;
    println!("array job {array_id}: {}", array.display());
    let report_id = cluster::sbatch(&report, Some(array_id.as_str()))
        .with_context(|| format!("array job {array_id} is submitted, but its report job is not"))?;
    println!(
        "report job {report_id} (after array job {array_id}): {}",
        report.display()
    );
    println!(
        "logs in {}; progress: dynatree status {} --artifacts {}",
        job.paths.slurm_dir().display(),
        job.paths.manifest.display(),
        job.paths.artifacts.display()
    );
    Ok(ExitCode::SUCCESS)
}
