//! The checkout stands on its own: the fixtures and datasets it ships are the bytes its READMEs
//! pin, no project file points outside the repository, and a copy of the checkout with nothing
//! beside it plans, prompts and runs its offline manifest.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, output, repo};

/// `sha256  path` lines of a README's code block, or `| `path` | ... | `sha256` |` table rows.
fn pins(readme: &str, dir: &Path) -> BTreeMap<PathBuf, String> {
    let text = std::fs::read_to_string(repo(readme)).unwrap();
    let mut pins = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .split(['|', ' ', '`'])
            .filter(|c| !c.is_empty())
            .collect();
        let hex = |c: &str| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit());
        let Some(sha) = cells.iter().copied().find(|c| hex(c)) else {
            continue;
        };
        let Some(file) = cells.iter().copied().find(|c| c.contains('.') && !hex(c)) else {
            continue;
        };
        // `tiny-neox/{target,draft}/tokenizer.json` names both copies.
        let expanded: Vec<String> = match (file.find('{'), file.find('}')) {
            (Some(open), Some(close)) => file[open + 1..close]
                .split(',')
                .map(|part| format!("{}{part}{}", &file[..open], &file[close + 1..]))
                .collect(),
            _ => vec![file.to_string()],
        };
        for file in expanded {
            pins.insert(dir.join(file), sha.to_string());
        }
    }
    pins
}

fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn embedded_files_are_the_bytes_their_readmes_pin() {
    let fixtures = pins("tests/fixtures/README.md", &repo("tests/fixtures"));
    let datasets = pins("datasets/README.md", &repo("datasets"));
    assert_eq!(fixtures.len(), 9, "{fixtures:?}");
    assert_eq!(datasets.len(), 3, "{datasets:?}");
    for (path, expected) in fixtures.iter().chain(&datasets) {
        assert_eq!(&sha256(path), expected, "{}", path.display());
    }
}

/// Every file of the checkout that git would commit: tracked ones and new ones not ignored.
fn checkout_files() -> Vec<String> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ])
        .current_dir(repo(""))
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|f| !f.is_empty() && repo(f).is_file())
        .map(str::to_string)
        .collect()
}

#[test]
fn no_project_file_reads_outside_the_repository() {
    // Spelt in two pieces so that this file does not match itself.
    let outside = format!("..{}shared", '/');
    let offenders: Vec<String> = checkout_files()
        .into_iter()
        .filter(|f| !f.ends_with(".md") && !f.ends_with(".safetensors") && !f.ends_with(".json"))
        .filter(|f| {
            std::fs::read(repo(f))
                .map(|bytes| String::from_utf8_lossy(&bytes).contains(&outside))
                .unwrap_or(false)
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "these files point outside the checkout ({outside}): {offenders:?}"
    );
}

#[test]
fn a_copy_of_the_checkout_alone_runs_its_offline_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing beside the copy: `<tmp>/checkout/..` holds no shared/.
    let root = tmp.path().join("checkout");
    for file in checkout_files() {
        let to = root.join(&file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo(&file), &to).unwrap();
    }
    let dynatree = |args: &[&str]| {
        let mut cmd = common::dynatree();
        cmd.args(args)
            .current_dir(&root)
            .env("HF_HUB_CACHE", tmp.path().join("empty-hub-cache"));
        output(&mut cmd)
    };
    let manifest = "experiments/tiny.toml";
    assert!(ok(dynatree(&["check", manifest])).contains("ok, 18 runs"));
    let plan = ok(dynatree(&["plan", manifest]));
    assert_eq!(plan.lines().count(), 18, "{plan}");
    let prompts = ok(dynatree(&["prompts", manifest, "--json"]));
    assert_eq!(
        prompts.lines().count(),
        6,
        "3 prompts per dataset: {prompts}"
    );
    let ran = ok(dynatree(&[
        "run",
        manifest,
        "--only",
        "method=ar,dataset=wikitext2",
    ]));
    assert!(ran.contains("1 done now"), "{ran}");
    let stored = common::results(&root.join("artifacts"));
    let (_, result) = stored.iter().next().expect("one result");
    let files = &result["config"]["dataset"]["files"];
    assert_eq!(
        files["test-00000-of-00001.parquet"],
        format!("sha256:{}", common::WIKI_TEST_SHA256)
    );
}
