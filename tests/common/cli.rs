//! Running the binary and reading what it wrote.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// The binary, offline: nothing a test runs may reach the network.
pub fn dynatree() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynatree"));
    cmd.env("HF_HUB_OFFLINE", "1");
    cmd
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Stdout of a command that must succeed.
pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

/// Everything a command that must fail printed.
pub fn failed(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure\n{}", text(&out));
    text(&out)
}

/// Runs a command to its end.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("binary runs")
}

/// Every stored result under `artifacts/runs`, by id.
pub fn results(artifacts: &Path) -> BTreeMap<String, serde_json::Value> {
    std::fs::read_dir(artifacts.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().to_string(), value)
        })
        .collect()
}

/// The ids of `plan --json`, in run order.
pub fn plan_ids(mut plan: Command) -> Vec<String> {
    ok(output(plan.arg("--json")))
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}
