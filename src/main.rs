//! Command line: parses arguments and hands each subcommand's arguments to its handler.

use clap::Parser;
use dynatree::bench::memory::CountingAlloc;
use dynatree::cli::{Cli, Command};
use dynatree::commands;

/// Counts heap bytes so runs can report their peak memory.
#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`).
    // SAFETY: restoring the default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let result = match &Cli::parse().command {
        Command::Generate(args) => commands::generate(args),
        Command::Methods(args) => commands::methods(args),
        Command::Check(args) => commands::check(args),
        Command::Plan(args) => commands::plan(args),
        Command::Run(args) => commands::run(args),
        Command::Submit(args) => commands::submit(args),
        Command::Fetch(args) => commands::fetch(args),
        Command::Prompts(args) => commands::prompts(args),
        Command::Status(args) => commands::status(args),
        Command::Verify(args) => commands::verify(args),
        Command::Aggregate(args) => commands::aggregate(args),
        Command::Report(args) => commands::report(args),
        Command::Summary(args) => commands::summary(args),
        Command::Why(args) => commands::why(args),
        Command::Device(args) => commands::device(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", commands::error_message(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
