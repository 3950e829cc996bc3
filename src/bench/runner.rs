//! `dynatree run`: executes the pending runs of a manifest, one process or many.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use super::gpu_memory::{GpuPeaks, Probe};
use super::record::{tokens_sha256, Measured, Record, Summary};
use super::result::{
    LosslessCheck, ManifestInfo, MemoryKind, MemorySummary, PromptInfo, RunResult,
};
use super::{
    memory, provenance::Provenance, resolve_device, BenchError, OnlyFilter, PlannedRun, Planner,
};
use crate::data::{self, Prompt};
use crate::decode::{GenerationSettings, Method};
use crate::engine::{Engine, EngineSpec};
use crate::manifest::{Manifest, ModelRef};
use crate::model::{parse_dtype, HubSettings, ModelSource};
use crate::store::Store;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Which of the planned runs a `run` invocation takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunOptions {
    /// Comma-separated terms, all of which a run must match: key=value (dataset, method or a
    /// parameter) or a bare method, dataset or id prefix.
    #[arg(long, value_name = "TERMS")]
    pub only: Option<String>,
    /// I/N: run the planned runs at positions I, I+N, I+2N, ... (one of N processes).
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Run again even when a verifying result exists.
    #[arg(long)]
    pub force: bool,
}

/// Parses `--shard I/N`.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
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

/// What a `run` invocation did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub completed: Vec<String>,
    pub skipped_locked: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub not_lossless: Vec<String>,
    pub already_done: usize,
    pub interrupted: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Said the moment Ctrl-C arrives: a long generation may take a while to finish.
const INTERRUPT_ACK: &[u8] =
    b"\ninterrupt: finishing the current generation, then stopping; nothing partial is written. Ctrl-C again aborts at once.\n";

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // SAFETY: write(2) on stderr is async-signal-safe; a short write only shortens the notice.
    unsafe { libc::write(2, INTERRUPT_ACK.as_ptr().cast(), INTERRUPT_ACK.len()) };
    // A second Ctrl-C ends the process at once.
    // SAFETY: restoring the default disposition is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Ctrl-C lets the current generation finish, writes nothing partial and stops.
fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic and calls signal(), both async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };
}

/// Selects this invocation's runs: the shard, the filter, and (unless forced) not yet done;
/// also says how many selected runs are done. Holds only the selected runs.
pub fn select(
    planner: &Planner,
    opts: &RunOptions,
    store: &Store,
) -> Result<(Vec<PlannedRun>, usize), BenchError> {
    let mut only = opts.only.as_deref().map(OnlyFilter::new).transpose()?;
    let (mut pending, mut done, mut index) = (Vec::new(), 0, 0);
    planner.try_each(|run| {
        // Every run counts for the filter's terms, in this shard or not.
        let chosen = only.as_mut().is_none_or(|f| f.select(&run));
        let in_shard = opts.shard.is_none_or(|(i, count)| index % count == i);
        index += 1;
        if !chosen || !in_shard {
            return Ok(());
        }
        match !opts.force && store.is_done(&run.id) {
            true => done += 1,
            false => pending.push(run),
        }
        Ok::<(), BenchError>(())
    })?;
    if let Some(only) = &only {
        only.finish(planner)?;
    }
    Ok((pending, done))
}

pub fn run(
    planner: &Planner,
    runs: Vec<PlannedRun>,
    store: &Store,
    hub: &HubSettings,
    force: bool,
) -> Result<RunReport, BenchError> {
    let mut report = RunReport::default();
    if runs.is_empty() {
        return Ok(report);
    }
    let manifest = planner.manifest();
    install_interrupt_handler();
    let started = std::time::SystemTime::now();
    let engine = load_engine(manifest, hub)?;
    let mut prompts = PromptSets::default();
    let progress = Progress::new(runs.len());
    for run in &runs {
        if INTERRUPTED.load(Ordering::SeqCst) {
            report.interrupted = true;
            break;
        }
        progress.start_run(run);
        let Some(_lock) = store.try_lock(&run.id)? else {
            progress.println(format!(
                "skip {} {} (running elsewhere)",
                short(&run.id),
                run.label()
            ));
            report.skipped_locked.push(run.id.clone());
            continue;
        };
        // Another runner may have finished it between planning and locking; with --force, a
        // result written since this runner started is another forced runner's redo.
        if store.is_done(&run.id) && (!force || written_since(store, &run.id, started)) {
            progress.println(format!(
                "skip {} {} (done elsewhere)",
                short(&run.id),
                run.label()
            ));
            report.already_done += 1;
            progress.finish_run();
            continue;
        }
        let config = planner.config(&run.point);
        let job = Job {
            run,
            config: &config,
            manifest,
        };
        match execute(&job, &engine, &mut prompts, store, hub, &progress) {
            Ok(None) => {
                report.interrupted = true;
                break;
            }
            Ok(Some(result)) => {
                let lossless = result.lossless;
                let rate = result
                    .summary
                    .throughput_tokens_per_s
                    .map_or(0.0, |e| e.mean);
                store.write_result(&run.id, result.to_value())?;
                let flag = if lossless {
                    ""
                } else {
                    "  NOT LOSSLESS: output differs from AR"
                };
                progress.println(format!(
                    "done {} {} {rate:.1} tokens/s{flag}",
                    short(&run.id),
                    run.label()
                ));
                if !lossless {
                    report.not_lossless.push(run.id.clone());
                }
                report.completed.push(run.id.clone());
            }
            Err(error) => {
                let message = error.to_string();
                store.write_failure(&run.id, &config, &message)?;
                progress.println(format!(
                    "FAILED {} {}: {message}",
                    short(&run.id),
                    run.label()
                ));
                report.failed.push((run.id.clone(), message));
            }
        }
        progress.finish_run();
    }
    progress.finish();
    Ok(report)
}

/// Whether `id`'s stored result was written at or after `time`.
fn written_since(store: &Store, id: &str, time: std::time::SystemTime) -> bool {
    std::fs::metadata(store.result_path(id))
        .and_then(|m| m.modified())
        .is_ok_and(|written| written >= time)
}

pub fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn load_engine(manifest: &Manifest, hub: &HubSettings) -> Result<Engine, BenchError> {
    let source = |m: &ModelRef| match m {
        ModelRef::Hub { hub, revision } => ModelSource::Hub {
            repo: hub.clone(),
            revision: revision.clone(),
        },
        ModelRef::Path { path } => ModelSource::Local(path.clone()),
    };
    let (device, _) = resolve_device(&manifest.models.device)?;
    let spec = EngineSpec {
        target: source(&manifest.models.target),
        draft: manifest.models.draft.as_ref().map(source),
        tokenizer: None,
        dtype: parse_dtype(&manifest.models.dtype)?,
        device,
    };
    Ok(Engine::load(&spec, hub)?)
}

/// AR's output per prompt (prompt sha256 → output sha256), and where it came from.
#[derive(Clone)]
struct Reference {
    outputs: HashMap<String, String>,
    /// [`LosslessCheck::reference`].
    source: &'static str,
}

/// A dataset's prompts, tokenized, and the AR outputs every other method must reproduce.
#[derive(Default)]
struct PromptSets {
    /// (dataset, prompt cap) → its prompts, tokenized.
    prompts: HashMap<(String, usize), Vec<TokenizedPrompt>>,
    /// AR baseline id → its outputs.
    reference: HashMap<String, Reference>,
}

/// A prompt and its token ids.
type TokenizedPrompt = (Prompt, Vec<u32>);

impl PromptSets {
    fn get(
        &mut self,
        point: &crate::grid::GridPoint,
        manifest: &Manifest,
        engine: &Engine,
        hub: &HubSettings,
    ) -> Result<&[TokenizedPrompt], BenchError> {
        let key = (point.dataset.clone(), point.max_chars);
        if !self.prompts.contains_key(&key) {
            let prompts = data::dataset_prompts(
                &manifest.datasets[&point.dataset],
                manifest.prompts.count,
                point.max_chars,
                manifest.experiment.seed,
                hub,
            )?;
            let tokenized = prompts
                .into_iter()
                .map(|p| engine.encode(&p.text).map(|ids| (p, ids)))
                .collect::<Result<Vec<_>, _>>()?;
            self.prompts.insert(key.clone(), tokenized);
        }
        Ok(&self.prompts[&key])
    }
}

/// A run to execute, with its config and manifest.
struct Job<'a> {
    run: &'a PlannedRun,
    config: &'a serde_json::Value,
    manifest: &'a Manifest,
}

/// Runs warm-ups then measured repeats for every prompt; `None` when interrupted.
fn execute(
    job: &Job,
    engine: &Engine,
    prompts: &mut PromptSets,
    store: &Store,
    hub: &HubSettings,
    progress: &Progress,
) -> Result<Option<RunResult>, BenchError> {
    let (run, manifest) = (job.run, job.manifest);
    let method = &run.point.method;
    let settings = engine.settings(run.point.max_new_tokens, manifest.generation.stop_at_eos);
    let set = prompts.get(&run.point, manifest, engine, hub)?.to_vec();
    let reference = reference_outputs(job, engine, prompts, store, &set, &settings)?;
    let (warmup, repeats) = (manifest.experiment.warmup, manifest.experiment.repeats);
    progress.set_tokens(set.len() * (warmup + repeats) * settings.max_new_tokens);
    let provenance = Provenance::start(!engine.target.device().is_cpu());
    let mut records = Vec::with_capacity(set.len() * repeats);
    let mut gpu = GpuMemory::of(engine.target.device());
    for (index, (prompt, ids)) in set.iter().enumerate() {
        for repeat in 0..warmup + repeats {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Ok(None);
            }
            memory::reset_peak();
            gpu.reset();
            let generation = engine.generate(method, ids, &settings)?;
            let gpu_peaks = gpu.read();
            progress.add_tokens(settings.max_new_tokens);
            if repeat < warmup {
                continue;
            }
            let at = Measured {
                prompt_index: index,
                prompt_sha256: &prompt.sha256,
                prompt_tokens: ids.len(),
                repeat: repeat - warmup,
            };
            let mut record = Record::new(at, method, &generation);
            record.gpu_peaks = gpu_peaks;
            record.lossless = reference.outputs.get(&prompt.sha256) == Some(&record.output_sha256);
            records.push(record);
        }
    }
    let matching = records.iter().filter(|r| r.lossless).count();
    Ok(Some(RunResult {
        id: run.id.clone(),
        config: job.config.clone(),
        manifest: ManifestInfo {
            path: manifest.path.clone(),
            experiment: manifest.experiment.name.clone(),
            dataset_label: manifest.datasets[&run.point.dataset].label.clone(),
        },
        provenance: provenance.finish(),
        prompts: set
            .iter()
            .map(|(p, ids)| PromptInfo {
                sha256: p.sha256.clone(),
                tokens: ids.len(),
            })
            .collect(),
        summary: Summary::of(&records, method.needs_draft()),
        memory: memory_summary(engine, &records, gpu.problem),
        lossless: matching == records.len(),
        lossless_check: LosslessCheck {
            reference: reference.source.into(),
            generations_checked: records.len(),
            generations_matching: matching,
        },
        records,
    }))
}

/// The GPU memory probe of a run, and the first reason it could not measure (after which the
/// run's GPU figure is not measured: a peak over some generations would understate it).
struct GpuMemory {
    probe: Option<Probe>,
    problem: Option<String>,
}

impl GpuMemory {
    fn of(device: &candle_core::Device) -> Self {
        match Probe::for_device(device) {
            Ok(probe) => Self {
                probe,
                problem: None,
            },
            Err(problem) => Self {
                probe: None,
                problem: Some(problem),
            },
        }
    }

    fn reset(&mut self) {
        if let Some(Err(problem)) = self.probe.as_ref().map(Probe::reset) {
            self.fail(problem);
        }
    }

    fn read(&mut self) -> Option<GpuPeaks> {
        match self.probe.as_ref()?.read() {
            Ok(peaks) => Some(peaks),
            Err(problem) => {
                self.fail(problem);
                None
            }
        }
    }

    fn fail(&mut self, problem: String) {
        self.problem.get_or_insert(problem);
        self.probe = None;
    }
}

/// Host heap on CPU, the CUDA pool's allocated high-water mark on a GPU. Host heap on a GPU
/// run would not be GPU memory: where the pool cannot be read the figure is not measured, and
/// the summary says why.
fn memory_summary(engine: &Engine, records: &[Record], problem: Option<String>) -> MemorySummary {
    let device = engine.target.device();
    let kind = if device.is_cpu() {
        MemoryKind::HostHeap
    } else {
        MemoryKind::GpuAllocated
    };
    let name = if device.is_cpu() { "cpu" } else { "cuda" };
    let weights = (
        engine.target.weight_bytes(),
        engine.draft.as_ref().map_or(0, |d| d.weight_bytes()),
    );
    let mut summary = MemorySummary::of(records, kind, name, weights);
    if let Some(problem) = problem {
        summary.peak_bytes = None;
        summary.rest_bytes = None;
        summary.gpu_reserved_peak_bytes = None;
        summary.not_measured = Some(problem);
    }
    summary
}

/// AR's output per prompt: from the stored AR run of the same inputs when there is one, else
/// generated here (untimed). An AR run is itself checked against such an untimed generation,
/// which makes its `lossless` flag a determinism check of its measured repeats.
fn reference_outputs(
    job: &Job,
    engine: &Engine,
    prompts: &mut PromptSets,
    store: &Store,
    set: &[(Prompt, Vec<u32>)],
    settings: &GenerationSettings,
) -> Result<Reference, BenchError> {
    // Keyed by the AR baseline's id: the same dataset, length and everything else.
    let run = job.run;
    let baseline_id = crate::store::run_id(&super::identity::baseline_config(job.config));
    if let Some(known) = prompts.reference.get(&baseline_id) {
        return Ok(known.clone());
    }
    let stored = (baseline_id != run.id)
        .then(|| store.read_result(&baseline_id).ok().flatten())
        .flatten()
        .and_then(|value| RunResult::from_value(value).ok())
        .map(|ar| {
            ar.records
                .into_iter()
                .map(|r| (r.prompt_sha256, r.output_sha256))
                .collect::<HashMap<_, _>>()
        });
    let reference = match stored {
        Some(outputs) if outputs.len() == set.len() => Reference {
            outputs,
            source: "ar_run",
        },
        _ => {
            let mut outputs = HashMap::new();
            for (prompt, ids) in set {
                let generation = engine.generate(&Method::Ar, ids, settings)?;
                outputs.insert(prompt.sha256.clone(), tokens_sha256(&generation.tokens));
            }
            Reference {
                outputs,
                source: "ar_untimed",
            }
        }
    };
    prompts.reference.insert(baseline_id, reference.clone());
    Ok(reference)
}

/// Runs overall with ETA, tokens within the current run; silent when stderr is not a terminal.
struct Progress {
    bars: MultiProgress,
    runs: ProgressBar,
    tokens: ProgressBar,
}

impl Progress {
    fn new(runs: usize) -> Self {
        let bars = MultiProgress::new();
        let style =
            |template: &str| ProgressStyle::with_template(template).expect("valid template");
        let runs_bar = bars.add(ProgressBar::new(runs as u64));
        runs_bar.set_style(style(
            "runs   {bar:30} {pos}/{len} [{elapsed_precise}, ETA {eta_precise}] {msg}",
        ));
        let tokens = bars.add(ProgressBar::new(0));
        tokens.set_style(style("tokens {bar:30} {pos}/{len}"));
        Self {
            bars,
            runs: runs_bar,
            tokens,
        }
    }

    fn start_run(&self, run: &PlannedRun) {
        self.runs.set_message(run.label());
        self.tokens.set_position(0);
    }

    fn set_tokens(&self, total: usize) {
        self.tokens.set_length(total as u64);
    }

    fn add_tokens(&self, n: usize) {
        self.tokens.inc(n as u64);
    }

    fn finish_run(&self) {
        self.runs.inc(1);
    }

    /// Prints above the bars (or plainly when they are hidden).
    fn println(&self, line: String) {
        if self.bars.is_hidden() {
            println!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }

    fn finish(&self) {
        self.tokens.finish_and_clear();
        self.runs.finish();
    }
}
