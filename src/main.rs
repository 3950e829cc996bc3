//! Command line: parses arguments and hands off to the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dynatree::bench::memory::CountingAlloc;
use dynatree::bench::runner::RunOptions;
use dynatree::cluster::SlurmOptions;
use dynatree::commands;
use dynatree::decode::{Method, Schedule, TreeParams};
use dynatree::engine::{Engine, EngineSpec};
use dynatree::model::{parse_device, parse_dtype, HubSettings, ModelSource};

/// Counts heap bytes so runs can report their peak memory.
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

#[derive(Parser)]
#[command(
    name = "dynatree",
    version,
    about = "Speculative-decoding experiments on GPT-NeoX (Pythia)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate greedily from a prompt with one decoding method.
    Generate(GenerateArgs),
    /// Validate a manifest and its grid without running anything.
    Check { manifest: PathBuf },
    /// List a manifest's runs with their ids, in run order.
    Plan {
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
    /// Run what is not done yet (resumable; safe to start several at once).
    Run {
        manifest: PathBuf,
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
        /// Comma-separated terms: key=value (dataset, method, a parameter) or a method, dataset or id prefix.
        #[arg(long)]
        only: Option<String>,
        /// I/N: run every N-th planned run starting at I.
        #[arg(long, value_parser = commands::parse_shard)]
        shard: Option<(usize, usize)>,
        /// Run again even when a verifying result exists.
        #[arg(long)]
        force: bool,
    },
    /// Submit the pending runs as a Slurm job array (task i runs `run --shard i/N`), then a job
    /// that runs aggregate and report once every task has ended.
    Submit {
        manifest: PathBuf,
        /// Submit to Slurm with sbatch (the only scheduler so far).
        #[arg(long, required = true)]
        slurm: bool,
        /// Shared by every node: results, scripts and logs (`slurm/`) go here.
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
        #[arg(long)]
        partition: Option<String>,
        #[arg(long)]
        gpus_per_task: Option<u32>,
        #[arg(long)]
        cpus_per_task: Option<u32>,
        /// Memory per node, as sbatch takes it (e.g. 32G).
        #[arg(long)]
        mem: Option<String>,
        /// Time limit per job, as sbatch takes it (e.g. 04:00:00).
        #[arg(long)]
        time: Option<String>,
        /// At most K array tasks at once.
        #[arg(long, value_name = "K")]
        max_parallel: Option<usize>,
        /// At most this many array tasks [default: one per pending run, at most 1000].
        #[arg(long)]
        tasks: Option<usize>,
        /// Write and print the scripts without submitting them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Aggregate every result into `summary.csv` (one row per run) and `per_prompt.csv`.
    Aggregate {
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
    /// Write a manifest's LaTeX tables, numbers.tex, figures and appendix.tex (aggregating first).
    Report {
        manifest: PathBuf,
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
    /// Download a manifest's hub datasets and models into the Hugging Face cache, verify the
    /// datasets' checksums and keep the lock file.
    Fetch {
        manifest: PathBuf,
        /// Record changed checksums in the lock on purpose (the manifest's pins must still match).
        #[arg(long)]
        update_lock: bool,
        #[arg(long, default_value = "datasets/lock.toml")]
        lock: PathBuf,
    },
    /// Print every dataset's prompts, exactly as `run` builds them.
    Prompts {
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Which runs of a manifest are done, failed or pending.
    Status {
        manifest: PathBuf,
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
    /// Check every stored result against its checksum and id.
    Verify {
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
    /// Show which inputs make two runs differ.
    Why {
        left: String,
        right: String,
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodName {
    Ar,
    Linear,
    Dynatree,
    #[value(name = "hf_assisted")]
    HfAssisted,
}

#[derive(Args)]
struct GenerateArgs {
    /// Target model: a local directory or a hub id `org/name[@revision]`.
    #[arg(long)]
    target: String,
    /// Draft model (needed by every method but ar).
    #[arg(long)]
    draft: Option<String>,
    /// tokenizer.json to use instead of the target's.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    #[arg(long, value_enum)]
    method: MethodName,
    /// linear: draft tokens per round [default: 6].
    #[arg(long)]
    k: Option<usize>,
    /// dynatree: tree depth [default: 6].
    #[arg(long)]
    depth: Option<usize>,
    /// dynatree: children per node [default: 2].
    #[arg(long)]
    branch: Option<usize>,
    /// dynatree: prune paths whose cumulative draft probability is below this [default: 0.03].
    #[arg(long)]
    tau: Option<f64>,
    /// dynatree: node budget [default: 32].
    #[arg(long)]
    max_nodes: Option<usize>,
    /// hf_assisted: initial draft tokens per round [default: 5].
    #[arg(long)]
    num_assistant_tokens: Option<usize>,
    /// hf_assisted: heuristic or constant [default: heuristic].
    #[arg(long)]
    schedule: Option<Schedule>,
    /// hf_assisted: stop drafting after a token below this draft probability [default: 0].
    #[arg(long)]
    confidence_threshold: Option<f64>,
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    #[arg(long)]
    max_new_tokens: usize,
    /// End at the end-of-text token (by default exactly max-new-tokens are generated).
    #[arg(long)]
    stop_at_eos: bool,
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print one JSON object instead of text and a stats line.
    #[arg(long)]
    json: bool,
}

impl GenerateArgs {
    fn method(&self) -> Result<Method> {
        let given = |name: &str, present: bool, allowed: bool| -> Result<()> {
            if present && !allowed {
                bail!("--{name} does not apply to --method {}", self.method_name());
            }
            Ok(())
        };
        let (linear, tree, hf) = match self.method {
            MethodName::Ar => (false, false, false),
            MethodName::Linear => (true, false, false),
            MethodName::Dynatree => (false, true, false),
            MethodName::HfAssisted => (false, false, true),
        };
        given("k", self.k.is_some(), linear)?;
        given("depth", self.depth.is_some(), tree)?;
        given("branch", self.branch.is_some(), tree)?;
        given("tau", self.tau.is_some(), tree)?;
        given("max-nodes", self.max_nodes.is_some(), tree)?;
        given(
            "num-assistant-tokens",
            self.num_assistant_tokens.is_some(),
            hf,
        )?;
        given("schedule", self.schedule.is_some(), hf)?;
        given(
            "confidence-threshold",
            self.confidence_threshold.is_some(),
            hf,
        )?;
        let method = match self.method {
            MethodName::Ar => Method::Ar,
            MethodName::Linear => Method::Linear {
                k: self.k.unwrap_or(6),
            },
            MethodName::Dynatree => Method::Dynatree(TreeParams {
                depth: self.depth.unwrap_or(6),
                branch: self.branch.unwrap_or(2),
                tau: self.tau.unwrap_or(0.03),
                max_nodes: self.max_nodes.unwrap_or(32),
            }),
            MethodName::HfAssisted => Method::HfAssisted {
                num_assistant_tokens: self.num_assistant_tokens.unwrap_or(5),
                schedule: self.schedule.unwrap_or(Schedule::Heuristic),
                confidence_threshold: self.confidence_threshold.unwrap_or(0.0),
            },
        };
        method.validate().map_err(anyhow::Error::msg)?;
        Ok(method)
    }

    fn method_name(&self) -> &'static str {
        match self.method {
            MethodName::Ar => "ar",
            MethodName::Linear => "linear",
            MethodName::Dynatree => "dynatree",
            MethodName::HfAssisted => "hf_assisted",
        }
    }

    fn spec(&self) -> Result<EngineSpec> {
        let source = |s: &str, flag: &str| {
            ModelSource::parse(s).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
        };
        Ok(EngineSpec {
            target: source(&self.target, "target")?,
            draft: self
                .draft
                .as_deref()
                .map(|d| source(d, "draft"))
                .transpose()?,
            tokenizer: self.tokenizer.clone(),
            dtype: parse_dtype(&self.dtype)?,
            device: parse_device(&self.device)?,
        })
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    let method = args.method()?;
    if method.needs_draft() && args.draft.is_none() {
        bail!("--method {} needs --draft", method.name());
    }
    let engine = Engine::load(&args.spec()?, &HubSettings::from_env()).context("loading models")?;
    let prompt = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => engine.encode(text)?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => unreachable!("clap requires one of --prompt and --prompt-ids"),
    };
    let settings = engine.settings(args.max_new_tokens, args.stop_at_eos);
    let generation = engine.generate(&method, &prompt, &settings)?;
    let report = engine.report(&method, prompt, generation)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if let Some(text) = &report.text {
            println!("{text}");
        } else {
            println!("{:?}", report.tokens);
        }
        eprintln!("{}", report.stats_line());
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`).
    // SAFETY: restoring the default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let result = match Cli::parse().command {
        Command::Generate(args) => generate(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Check { manifest } => commands::check(&manifest),
        Command::Plan {
            manifest,
            json,
            artifacts,
        } => commands::plan(&manifest, &artifacts, json),
        Command::Run {
            manifest,
            artifacts,
            only,
            shard,
            force,
        } => commands::run(&manifest, &artifacts, RunOptions { only, shard, force }),
        Command::Submit {
            manifest,
            slurm: _,
            artifacts,
            partition,
            gpus_per_task,
            cpus_per_task,
            mem,
            time,
            max_parallel,
            tasks,
            dry_run,
        } => {
            let options = SlurmOptions {
                partition,
                gpus_per_task,
                cpus_per_task,
                mem,
                time,
                max_parallel,
                tasks,
            };
            commands::submit(&manifest, &artifacts, options, dry_run)
        }
        Command::Fetch {
            manifest,
            update_lock,
            lock,
        } => commands::fetch(&manifest, &lock, update_lock),
        Command::Prompts { manifest, json } => commands::prompts(&manifest, json),
        Command::Status {
            manifest,
            artifacts,
        } => commands::status(&manifest, &artifacts),
        Command::Verify { artifacts } => commands::verify(&artifacts),
        Command::Aggregate { artifacts } => commands::aggregate(&artifacts),
        Command::Report {
            manifest,
            artifacts,
            out,
        } => commands::report(&manifest, &artifacts, &out),
        Command::Why {
            left,
            right,
            artifacts,
        } => commands::why(&left, &right, &artifacts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
