//! The command line: one clap `Args` struct per subcommand, handed whole to its handler in
//! [`crate::commands`]. Options that several subcommands take are defined once here and
//! flattened into each.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::bench::runner::RunOptions;
use crate::cluster::SlurmOptions;

const ABOUT: &str =
    "Speculative-decoding experiments on GPT-NeoX (Pythia): AR, linear speculative \
decoding, token trees (DynaTree) and Hugging Face assisted generation, from a TOML manifest to the \
LaTeX tables and figures of a paper's appendix.";

const AFTER_HELP: &str = "\
The usual chain (what `make reproduce` runs):
  dynatree check experiments/paper.toml       validate the manifest and its grid
  dynatree fetch experiments/paper.toml       download and pin datasets and models
  dynatree run experiments/paper.toml         run what is not done yet (resumable)
  dynatree report experiments/paper.toml      tables, numbers, figures, appendix.tex
  dynatree summary experiments/paper.toml     the headline numbers in the terminal

Offline, on the fixtures that ship with the repository:
  make demo

`dynatree help COMMAND` describes each command with an example.";

#[derive(Parser)]
#[command(name = "dynatree", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Generate(GenerateArgs),
    Methods(MethodsArgs),
    Check(CheckArgs),
    Plan(PlanArgs),
    Run(RunArgs),
    Submit(SubmitArgs),
    Fetch(FetchArgs),
    Prompts(PromptsArgs),
    Status(StatusArgs),
    Verify(VerifyArgs),
    Aggregate(AggregateArgs),
    Report(ReportArgs),
    Summary(SummaryArgs),
    Why(WhyArgs),
    Device(DeviceArgs),
}

/// Which device `device = ...` selects on this machine, and what its memory figures measure.
///
/// On CUDA it checks the memory probe: allocates a known number of bytes and requires the
/// pool's allocated high-water mark to rise by that much (exit 1 otherwise).
#[derive(Args, Debug, Clone)]
#[command(after_help = "Example:\n  dynatree device --device cuda")]
pub struct DeviceArgs {
    /// auto, cpu, cuda or cuda:N, as in a manifest's [models] device.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Bytes the CUDA memory check allocates.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    pub probe_bytes: usize,
}

/// The experiment manifest and the dataset lock that pins what it leaves unpinned.
#[derive(Args, Debug, Clone)]
pub struct ManifestArg {
    /// The experiment manifest (TOML), e.g. experiments/paper.toml.
    pub manifest: PathBuf,
    /// Dataset lock: the checksums `fetch` recorded, which pin hub files the manifest leaves
    /// unpinned.
    #[arg(long, value_name = "FILE", default_value = "datasets/lock.toml")]
    pub lock: PathBuf,
}

/// Where results live (`runs/`, `failed/`, `locks/`, the CSV files).
#[derive(Args, Debug, Clone)]
pub struct ArtifactsArg {
    /// Artifacts directory: results in runs/, failures in failed/, CSV files at the top.
    #[arg(long, value_name = "DIR", default_value = "artifacts")]
    pub artifacts: PathBuf,
}

/// Machine-readable output.
#[derive(Args, Debug, Clone, Copy)]
pub struct FormatArg {
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Validate a manifest and its grid without running anything.
///
/// Parses the manifest strictly (unknown keys, wrong types and empty axes are errors reported
/// as FILE:LINE:COLUMN), expands the sweep grid and prints how many runs it holds. Hub dataset
/// files the manifest leaves unpinned are named, with whether the lock pins them yet.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree check experiments/paper.toml")]
pub struct CheckArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
}

/// List a manifest's runs with their ids, in run order.
///
/// A run's id is the sha256 of everything that determines its numbers (models, dataset
/// checksums, prompt rules, method and parameters, generation, device, engine version), so the
/// same id means the same measurement.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  dynatree plan experiments/paper.toml\n  dynatree plan experiments/paper.toml --json | jq -r .id"
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Run every planned run that has no verifying result yet.
///
/// Resumable and safe to start several times at once (one lock per run). Every speculative run's
/// outputs are compared with AR's; a mismatch is recorded as not lossless and makes the exit
/// status non-zero. Ctrl-C finishes the current generation and exits 130 without writing
/// anything partial.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  dynatree run experiments/paper.toml\n  dynatree run experiments/paper.toml --only method=dynatree,depth=6\n  dynatree run experiments/paper.toml --shard 0/4"
)]
pub struct RunArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
    #[command(flatten)]
    pub options: RunOptions,
}

/// Submit the pending runs as a Slurm job array, then a job that reports when they end.
///
/// Array task i runs `dynatree run MANIFEST --shard i/N` against the shared artifacts directory;
/// a second job, submitted with --dependency=afterany on the array, runs status, aggregate and
/// report into ARTIFACTS/report. Only shards with pending runs get a task.
#[derive(Args)]
#[command(
    after_help = "Example:\n  dynatree submit experiments/paper.toml --slurm --artifacts /shared/artifacts \\\n      --partition gpu --gpus-per-task 1 --time 04:00:00 --max-parallel 8"
)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Submit to Slurm with sbatch (the only scheduler so far).
    #[arg(long, required = true)]
    pub slurm: bool,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
    #[command(flatten)]
    pub options: SlurmOptions,
    /// Write and print the scripts without submitting them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Download a manifest's hub datasets and models and pin every dataset file.
///
/// Files go to the Hugging Face cache (HF_HUB_CACHE / HF_HOME; HF_ENDPOINT selects the server,
/// HF_HUB_OFFLINE=1 works from the cache). Every dataset file is checked against the manifest's
/// pin and the lock; the lock is written only when everything verified. A hub file the manifest
/// leaves unpinned is trusted on first use only with --update-lock, which records its checksum
/// in the lock and says so loudly.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  dynatree fetch experiments/paper.toml\n  dynatree fetch experiments/paper.toml --update-lock   # pin new files, record changed bytes"
)]
pub struct FetchArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Record new checksums in the lock on purpose: files the manifest leaves unpinned (trust on
    /// first use) and changed bytes of files the lock pins. A manifest's own pin must still match.
    #[arg(long)]
    pub update_lock: bool,
}

/// Print every dataset's prompts, exactly as `run` builds them.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree prompts experiments/tiny.toml --json")]
pub struct PromptsArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub format: FormatArg,
}

/// Which runs of a manifest are done, failed or pending.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree status experiments/paper.toml --artifacts artifacts")]
pub struct StatusArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// Check every stored result against its checksum and id.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree verify --artifacts artifacts")]
pub struct VerifyArgs {
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// Aggregate every result into summary.csv (one row per run) and per_prompt.csv.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree aggregate --artifacts artifacts")]
pub struct AggregateArgs {
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// Write a manifest's LaTeX tables, numbers.tex, figures and appendix.tex.
///
/// Aggregates first, then needs every run of the manifest done and lossless. Files whose bytes
/// would not change are not rewritten.
#[derive(Args)]
#[command(
    after_help = "Example:\n  dynatree report experiments/paper.toml --out report && (cd report && pdflatex appendix.tex)"
)]
pub struct ReportArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
    /// Directory for tables/, figures/, numbers.tex and appendix.tex.
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub out: PathBuf,
}

/// Print a manifest's headline numbers as a table in the terminal, and where the report is.
///
/// One row per run: method, dataset, throughput, speedup over AR, tokens per target pass and
/// peak memory, read from the same aggregation as the report.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree summary experiments/tiny.toml --report report/demo")]
pub struct SummaryArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
    /// The report directory whose tables, figures and PDF to list.
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub report: PathBuf,
}

/// Show which inputs make two runs differ.
#[derive(Args)]
#[command(after_help = "Example:\n  dynatree why 3f2a9c 81be07")]
pub struct WhyArgs {
    /// A stored run id, or a unique prefix of one.
    pub left: String,
    /// Another stored run id, or a unique prefix of one.
    pub right: String,
    #[command(flatten)]
    pub artifacts: ArtifactsArg,
}

/// List the decoding methods with their parameters, defaults and what they do.
#[derive(Args)]
#[command(
    after_help = "Example:\n  dynatree methods\n  dynatree generate --method fixed_tree -p depth=8 -p branch=3 ..."
)]
pub struct MethodsArgs {
    #[command(flatten)]
    pub format: FormatArg,
}

/// Generate greedily from a prompt with one decoding method.
///
/// Prints the text (or the token ids) and a stats line; every speculative method prints exactly
/// AR's tokens.
#[derive(Args)]
#[command(
    after_help = "Example:\n  dynatree generate --target tests/fixtures/tiny-neox/target --draft tests/fixtures/tiny-neox/draft \\\n      --method dynatree -p max_nodes=64 --prompt \"The history of the city\" --max-new-tokens 48"
)]
pub struct GenerateArgs {
    /// Target model: a local directory or a hub id `org/name[@revision]`.
    #[arg(long)]
    pub target: String,
    /// Draft model (needed by every method but ar).
    #[arg(long)]
    pub draft: Option<String>,
    /// tokenizer.json to use instead of the target's.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// ar, linear, fixed_tree, dynatree or hf_assisted (`dynatree methods` lists them with their
    /// parameters and defaults).
    #[arg(long)]
    pub method: String,
    /// A parameter of the method, `name=value`; repeatable. Unset parameters take the defaults
    /// `dynatree methods` shows.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Prompt text, encoded with the target's tokenizer.
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    #[arg(long)]
    pub max_new_tokens: usize,
    /// End at the end-of-text token (by default exactly max-new-tokens are generated).
    #[arg(long)]
    pub stop_at_eos: bool,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// cpu, cuda, cuda:N or auto (CUDA when built in and a GPU answers).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub format: FormatArg,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_explains_itself_with_an_example() {
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "{name} has no description");
            let after = sub
                .get_after_help()
                .map(|a| a.to_string())
                .unwrap_or_default();
            assert!(
                after.contains(&format!("dynatree {name}")),
                "{name}: no example in its help: {after:?}"
            );
        }
    }

    #[test]
    fn shared_options_have_one_default_everywhere() {
        let cli = Cli::try_parse_from(["dynatree", "status", "m.toml"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("status")
        };
        assert_eq!(args.artifacts.artifacts, PathBuf::from("artifacts"));
        assert_eq!(args.manifest.lock, PathBuf::from("datasets/lock.toml"));
    }
}
