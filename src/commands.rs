//! Command handlers: the edge between the parsed command line and the stages, printing for
//! people (or JSON) and turning failures into exit codes.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::bench::runner::{self, short};
use crate::bench::{self, Planner, RunState, StatusCounts};
use crate::cli::{
    AggregateArgs, CheckArgs, DeviceArgs, FetchArgs, GenerateArgs, ManifestArg, MethodsArgs,
    PlanArgs, PromptsArgs, ReportArgs, RunArgs, StatusArgs, SubmitArgs, SummaryArgs, VerifyArgs,
    WhyArgs,
};
use crate::data::lock::{Lock, Recorded};
use crate::data::{self, DataError};
use crate::decode::{method_names, method_spec, GenerationSettings, Method, METHODS};
use crate::engine::{Engine, EngineSpec};
use crate::manifest::{self, DatasetSource, Manifest, ModelRef};
use crate::model::{parse_dtype, HubSettings, ModelFiles, ModelSource};
use crate::store::Store;

/// The manifest with every hub file pinned, by the manifest itself or by the lock.
fn load(arg: &ManifestArg) -> Result<Manifest> {
    let mut manifest = manifest::load(&arg.manifest)?;
    Lock::load(&arg.lock)?.pin(&mut manifest, &arg.lock)?;
    Ok(manifest)
}

fn planner<'m>(manifest: &'m Manifest, artifacts: &Path) -> Result<Planner<'m>> {
    Planner::new(manifest, artifacts, &HubSettings::from_env()).context("planning runs")
}

/// Buffered stdout for commands that print a line per run: one write per line would cost a
/// system call each on a million-run grid.
fn run_lines() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock())
}

/// The error and its causes on one line, without a backtrace; a cause whose text the message
/// already holds (our errors name their source, then also chain it) is said once.
pub fn error_message(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// `dynatree check`: validates a manifest and its grid without running anything, and says which
/// hub files only the lock pins (or nothing yet).
pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let ManifestArg {
        manifest: path,
        lock,
    } = &args.manifest;
    let manifest = manifest::load(path)?;
    let grid = crate::grid::Grid::new(&manifest)?;
    bench::check_context(&manifest, &grid, &HubSettings::from_env())?;
    let runs = grid.len();
    crate::report::name_collisions(&manifest)?;
    println!("{}: ok, {runs} runs", path.display());
    let locked = Lock::load(lock)?;
    for (name, spec) in &manifest.datasets {
        let DatasetSource::Hub {
            hub,
            revision,
            files,
        } = &spec.source
        else {
            continue;
        };
        for file in files
            .iter()
            .filter(|(_, pin)| pin.is_none())
            .map(|(f, _)| f)
        {
            let state = match locked.hub_pin(hub, revision, file) {
                Some(sha) => format!("pinned by {} ({sha})", lock.display()),
                None => format!(
                    "NOT PINNED yet: `dynatree fetch {} --update-lock` trusts it on first use",
                    path.display()
                ),
            };
            println!(
                "dataset {name}: {hub}@{revision}:{file} is unpinned in the manifest; {state}"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynatree plan`: the expanded grid with ids, in run order.
pub fn plan(args: &PlanArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let planner = planner(&manifest, &args.artifacts.artifacts)?;
    let mut out = run_lines();
    planner.try_each(|run| {
        if args.format.json {
            let line = json!({"id": run.id, "dataset": run.point.dataset, "method": run.point.method.name(), "params": run.point.method.params()});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}  {}", run.id, run.label())?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `dynatree run`.
pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let artifacts = &args.artifacts.artifacts;
    let store = Store::open(artifacts)?;
    let planner = planner(&manifest, artifacts)?;
    let (pending, done) = runner::select(&planner, &args.options, &store)?;
    let force = args.options.force;
    if pending.is_empty() {
        println!("nothing to do: {done} runs already done");
        return Ok(ExitCode::SUCCESS);
    }
    let hub = HubSettings::from_env();
    let report = runner::run(&planner, pending, &store, &hub, force)?;
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
/// writes the lock (only when everything verified). A hub file the manifest leaves unpinned and
/// the lock does not know yet is trusted on first use only when `--update-lock` asks for it.
pub fn fetch(args: &FetchArgs) -> Result<ExitCode> {
    let (path, lock_path) = (&args.manifest.manifest, &args.manifest.lock);
    let update_lock = args.update_lock;
    let mut manifest = manifest::load(path)?;
    let hub = HubSettings::from_env();
    let mut lock = Lock::load(lock_path)?;
    // Files the lock pins are checked against it (and evicted when they differ), unless
    // --update-lock is to record their new bytes.
    if !update_lock {
        lock.pin_known(&mut manifest);
    }
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
            let first_use = !file.pinned_by_manifest && lock.find(&file.locked).is_none();
            if first_use && !update_lock {
                problems.push(format!(
                    "dataset {name}: {label} ({size} bytes, {sha}) is pinned neither by the manifest nor by {}; to trust these bytes on first use run `dynatree fetch {} --update-lock`, or pin them in the manifest",
                    lock_path.display(),
                    path.display()
                ));
                continue;
            }
            match lock.record(file.locked, update_lock, lock_path) {
                Ok(Recorded::Added) if first_use => {
                    println!("dataset {name}: {label} {size} bytes {sha} TRUSTED ON FIRST USE");
                    eprintln!(
                        "warning: dataset {name}: {label} is unpinned in {}; its bytes as downloaded now ({sha}) are recorded in {} and pin every later fetch and run. Check them, then pin them in the manifest: files = {{ \"{}\" = \"{sha}\" }}",
                        path.display(),
                        lock_path.display(),
                        file_in_repo(&label)
                    );
                }
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

/// The path in the repository of a lock entry's `repo@revision:path` name.
fn file_in_repo(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, file)| file)
}

/// `dynatree prompts`: every dataset's prompts, built exactly as `run` builds them.
pub fn prompts(args: &PromptsArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let as_json = args.format.json;
    let hub = HubSettings::from_env();
    for (name, spec) in &manifest.datasets {
        for &max_chars in manifest.prompts.max_chars_on(name) {
            let prompts = data::dataset_prompts(
                spec,
                manifest.prompts.count,
                max_chars,
                manifest.experiment.seed,
                &hub,
            )
            .with_context(|| format!("dataset {name}"))?;
            print_prompts(name, spec, max_chars, &prompts, as_json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_prompts(
    name: &str,
    spec: &crate::manifest::DatasetSpec,
    max_chars: usize,
    prompts: &[data::Prompt],
    as_json: bool,
) {
    if !as_json {
        println!(
            "== {name} ({}): {} prompts of at most {max_chars} characters",
            spec.label,
            prompts.len()
        );
    }
    for (index, prompt) in prompts.iter().enumerate() {
        let chars = prompt.text.chars().count();
        if as_json {
            let line = json!({"dataset": name, "max_chars": max_chars, "index": index, "sha256": prompt.sha256, "chars": chars, "text": prompt.text});
            println!("{line}");
        } else {
            println!("[{index}] sha256:{} {chars} chars", prompt.sha256);
            println!("{}\n", prompt.text);
        }
    }
}

/// `dynatree status`: a line per run that is not done (in grid order, as the runs stream), then
/// the counts.
pub fn status(args: &StatusArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let artifacts = &args.artifacts.artifacts;
    let store = Store::open_read(artifacts)?;
    let planner = planner(&manifest, artifacts)?;
    let mut counts = StatusCounts::default();
    let mut out = run_lines();
    planner.try_each(|run| {
        let state = RunState::of(&run.id, &store);
        counts.add(&state);
        let (id, label) = (short(&run.id), run.label());
        match state {
            RunState::Done => {}
            RunState::Failed(error) => writeln!(out, "failed   {id}  {label}: {error}")?,
            RunState::Tampered(problem) => writeln!(out, "tampered {id}  {label}: {problem}")?,
            RunState::Pending => writeln!(out, "pending  {id}  {label}")?,
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let StatusCounts {
        done,
        failed,
        tampered,
        pending,
    } = counts;
    let name = args.manifest.manifest.display();
    writeln!(
        out,
        "{name}: {done} done, {failed} failed, {tampered} tampered, {pending} pending"
    )?;
    out.flush()?;
    // Failed or tampered runs make the exit status say so, for scripts.
    Ok(if counts.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `dynatree verify`: every stored result against its checksum and id.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let store = Store::open_read(&args.artifacts.artifacts)?;
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
pub fn aggregate(args: &AggregateArgs) -> Result<ExitCode> {
    let artifacts = &args.artifacts.artifacts;
    let store = Store::open_read(artifacts)?;
    let aggregate = crate::report::aggregate(&store)?;
    for skipped in &aggregate.skipped {
        eprintln!(
            "skipped {}: {} (`dynatree run` redoes it)",
            skipped.path.display(),
            skipped.problem
        );
    }
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
pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let out = &args.out;
    let written = crate::report::report(&manifest, &args.artifacts.artifacts, out)?;
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
pub fn why(args: &WhyArgs) -> Result<ExitCode> {
    let (left, right) = (args.left.as_str(), args.right.as_str());
    let store = Store::open_read(&args.artifacts.artifacts)?;
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

/// `dynatree submit --slurm`: the runs not done yet as a Slurm job array (task i runs shard
/// i/N), then a job that aggregates and reports once every task has ended. With nothing pending
/// nothing is submitted: the report of a finished sweep is quicker to make where you are.
pub fn submit(args: &SubmitArgs) -> Result<ExitCode> {
    use crate::cluster::{self, Job, JobPaths};
    let (path, artifacts) = (&args.manifest.manifest, &args.artifacts.artifacts);
    let options = args.options.clone();
    options.validate()?;
    let manifest = load(&args.manifest)?;
    let store = Store::open(artifacts)?;
    let planner = planner(&manifest, artifacts)?;
    let (mut pending, mut index) = (Vec::new(), 0);
    planner.try_each(|run| {
        if !store.is_done(&run.id) {
            pending.push(index);
        }
        index += 1;
        Ok::<(), anyhow::Error>(())
    })?;
    let total = planner.len();
    let paths = JobPaths::resolve(path, &args.manifest.lock, artifacts)?;
    if pending.is_empty() {
        println!(
            "nothing to submit: all {total} runs of {} are done; for the report run\n  dynatree aggregate --artifacts {a}\n  dynatree report {} --artifacts {a} --out {a}/report",
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
    let layout = cluster::layout(&pending, total, max_tasks);
    println!(
        "{} of {} runs pending: {} array tasks, shards i/{}, at most {} runs per task{}",
        pending.len(),
        total,
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
    if args.dry_run {
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

/// `dynatree summary`: a manifest's headline numbers in the terminal, and where its report is.
pub fn summary(args: &SummaryArgs) -> Result<ExitCode> {
    let manifest = load(&args.manifest)?;
    let lines = crate::report::summary(&manifest, &args.artifacts.artifacts)?;
    print!("{}", crate::report::summary_table(&lines));
    let report = &args.report;
    let listed = |dir: &str, exts: &[&str]| -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(report.join(dir))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| exts.iter().any(|x| e == *x)))
            .map(|p| p.display().to_string())
            .collect();
        files.sort();
        files
    };
    let tables = listed("tables", &["tex"]);
    let figures = listed("figures", &["png", "svg"]);
    if tables.is_empty() && figures.is_empty() {
        println!(
            "\nno report in {} yet: dynatree report {} --out {}",
            report.display(),
            args.manifest.manifest.display(),
            report.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("\ntables:  {}", tables.join("\n         "));
    println!("figures: {}", figures.join("\n         "));
    let pdf = report.join("appendix.pdf");
    if pdf.exists() {
        println!("PDF:     {}", pdf.display());
    } else {
        println!(
            "PDF:     not built ({} is there; pdflatex compiles it)",
            report.join("appendix.tex").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynatree generate`: one greedy generation with one method.
pub fn generate(args: &GenerateArgs) -> Result<ExitCode> {
    let method = generate_method(args)?;
    if method.needs_draft() && args.draft.is_none() {
        bail!("--method {} needs --draft", method.name());
    }
    let engine =
        Engine::load(&engine_spec(args)?, &HubSettings::from_env()).context("loading models")?;
    let prompt = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => engine.encode(text)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => unreachable!("clap requires one of --prompt and --prompt-ids"),
    };
    let settings = GenerationSettings {
        trace_trees: method.is_tree(),
        ..engine.settings(args.max_new_tokens, args.stop_at_eos)
    };
    let generation = engine.generate(&method, &prompt, &settings)?;
    let report = engine.report(&method, prompt, generation)?;
    if args.format.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if let Some(text) = &report.text {
            println!("{text}");
        } else {
            println!("{:?}", report.tokens);
        }
        eprintln!("{}", report.stats_line());
    }
    Ok(ExitCode::SUCCESS)
}

/// The method `generate` was asked for: `--method` with its `--param name=value`s, the rest
/// the registry's defaults.
fn generate_method(args: &GenerateArgs) -> Result<Method> {
    let spec = method_spec(&args.method).with_context(|| {
        format!(
            "--method: unknown method {:?}; expected one of {}",
            args.method,
            method_names()
        )
    })?;
    let mut given = Vec::with_capacity(args.params.len());
    for pair in &args.params {
        let (name, text) = pair
            .split_once('=')
            .with_context(|| format!("--param {pair:?}: expected NAME=VALUE"))?;
        let param = spec
            .param(name.trim())
            .ok_or_else(|| anyhow::anyhow!("--param {pair:?}: {}", spec.unknown_param(name)))?;
        let value = param
            .parse(text.trim())
            .map_err(|e| anyhow::anyhow!("--param {pair:?}: {e}"))?;
        given.push((param.name, value));
    }
    spec.build_with(&given).map_err(anyhow::Error::msg)
}

/// `dynatree methods`: the registry, for people or as JSON.
pub fn methods(args: &MethodsArgs) -> Result<ExitCode> {
    for spec in &METHODS {
        if args.format.json {
            let params: Vec<serde_json::Value> = spec
                .params
                .iter()
                .map(|p| {
                    serde_json::json!({"name": p.name, "default": p.default,
                        "expected": p.expected(), "help": p.help})
                })
                .collect();
            let line = serde_json::json!({"method": spec.name, "label": spec.label,
                "needs_draft": spec.needs_draft, "help": spec.help, "params": params});
            println!("{line}");
            continue;
        }
        println!("{} ({}): {}", spec.name, spec.label, spec.help);
        for p in spec.params {
            println!(
                "    {:<22} {:<12} {}",
                p.name,
                p.default.to_string(),
                p.help
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn engine_spec(args: &GenerateArgs) -> Result<EngineSpec> {
    let source =
        |s: &str, flag: &str| ModelSource::parse(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"));
    Ok(EngineSpec {
        target: source(&args.target, "target")?,
        draft: args
            .draft
            .as_deref()
            .map(|d| source(d, "draft"))
            .transpose()?,
        tokenizer: args.tokenizer.clone(),
        dtype: parse_dtype(&args.dtype)?,
        device: bench::resolve_device(&args.device)?.0,
    })
}

/// `dynatree device`: the device a manifest would get here and, on CUDA, a check of the memory
/// probe against a known allocation.
pub fn device(args: &DeviceArgs) -> Result<ExitCode> {
    use crate::bench::gpu_memory::{check_known_allocation, Probe, KNOWN_ALLOCATION_SLACK};
    let (device, identity) = bench::resolve_device(&args.device)?;
    println!("device {:?}: {identity}", args.device);
    let probe = match Probe::for_device(&device) {
        Ok(Some(probe)) => probe,
        Ok(None) => {
            println!("memory: host heap high-water mark (the counting allocator)");
            return Ok(ExitCode::SUCCESS);
        }
        Err(reason) => {
            println!("memory: NOT MEASURED: {reason}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let check = check_known_allocation(&probe, &device, args.probe_bytes)
        .map_err(|e| anyhow::anyhow!("memory probe: {e}"))?;
    let verdict = if check.passes() { "pass" } else { "FAIL" };
    println!(
        "memory: CUDA pool high-water marks; allocating {} bytes raised the allocated mark by {} (allowed: up to {} more): {verdict}",
        check.requested, check.rise, KNOWN_ALLOCATION_SLACK
    );
    let peaks = probe
        .read()
        .map_err(|e| anyhow::anyhow!("memory probe: {e}"))?;
    println!(
        "memory: allocated high-water mark {} bytes, reserved {} bytes",
        peaks.allocated_bytes, peaks.reserved_bytes
    );
    Ok(if check.passes() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
