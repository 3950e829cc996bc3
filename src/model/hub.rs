//! Finds a model's files: a local directory, or a hub repo in the standard Hugging Face cache
//! (downloaded with hf-hub when missing, unless offline).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::error::{ModelError, Result};

/// Where a model comes from, as named on the command line or in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Local(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelSource {
    /// An existing directory is local; otherwise `org/name[@revision]` names a hub repo.
    pub fn parse(spec: &str) -> std::result::Result<Self, String> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(Self::Local(path.to_path_buf()));
        }
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let parts: Vec<&str> = repo.split('/').collect();
        let valid = parts.len() == 2 && parts.iter().all(|p| !p.is_empty()) && !revision.is_empty();
        if !valid || spec.starts_with('.') || spec.starts_with('/') {
            return Err(format!(
                "{spec:?} is neither an existing directory nor a hub id like EleutherAI/pythia-70m[@revision]"
            ));
        }
        Ok(Self::Hub {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Hub { repo, revision } => write!(f, "{repo}@{revision}"),
        }
    }
}

/// The hub settings Hugging Face tools share through the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    pub cache_dir: PathBuf,
    pub endpoint: String,
    pub offline: bool,
}

impl HubSettings {
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, as huggingface_hub does.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| Path::new(&h).join("hub")))
            .unwrap_or_else(|| {
                let home = var("HOME").unwrap_or_else(|| ".".to_string());
                Path::new(&home).join(".cache/huggingface/hub")
            });
        let offline = var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".to_string());
        Self {
            cache_dir,
            endpoint,
            offline,
        }
    }
}

impl HubSettings {
    /// An hf-hub client on these settings' cache and endpoint; `progress` draws download bars
    /// (only worth it when stderr is a terminal).
    pub fn api(
        &self,
        progress: bool,
    ) -> std::result::Result<hf_hub::api::sync::Api, hf_hub::api::sync::ApiError> {
        ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_progress(progress && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .build()
    }
}

/// A hub repo's files, materialised in the cache's snapshot directory of one commit.
pub struct HubSnapshot {
    pub dir: PathBuf,
    pub commit: String,
}

const WEIGHT_CANDIDATES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// Makes config, tokenizer and weights of a hub model available locally. Offline, or when the
/// hub cannot be reached, a complete cached snapshot of the revision is used instead.
pub fn fetch_model(repo: &str, revision: &str, settings: &HubSettings) -> Result<HubSnapshot> {
    if settings.offline {
        return cached_snapshot(repo, revision, settings);
    }
    download_snapshot(repo, revision, settings)
        .or_else(|online| cached_snapshot(repo, revision, settings).map_err(|_| online))
}

/// The commit a revision names, without downloading weights: asked of the hub, or read from the
/// cache's `refs/` when offline or unreachable.
pub fn resolve_commit(
    repo: &str,
    revision: &str,
    kind: RepoType,
    settings: &HubSettings,
) -> Result<String> {
    if is_commit_hash(revision) {
        return Ok(revision.to_string());
    }
    let hub_repo = Repo::with_revision(repo.to_string(), kind, revision.to_string());
    let ref_file = settings
        .cache_dir
        .join(hub_repo.folder_name())
        .join("refs")
        .join(revision);
    let cached = || std::fs::read_to_string(&ref_file).map(|c| c.trim().to_string());
    let unresolved = |message: String| ModelError::Hub {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: "<revision>".to_string(),
        message,
    };
    if settings.offline {
        return cached().map_err(|_| {
            unresolved(format!(
                "not in the cache (no {}) and HF_HUB_OFFLINE is set",
                ref_file.display()
            ))
        });
    }
    let api = settings.api(false).map_err(|e| unresolved(e.to_string()))?;
    match api.repo(hub_repo).info() {
        Ok(info) => Ok(info.sha),
        Err(online) => cached().map_err(|_| unresolved(online.to_string())),
    }
}

fn download_snapshot(repo: &str, revision: &str, settings: &HubSettings) -> Result<HubSnapshot> {
    let hub_err = |file: &str, message: String| ModelError::Hub {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: file.to_string(),
        message,
    };
    let api = settings
        .api(true)
        .map_err(|e| hub_err("<api>", e.to_string()))?;
    let api_repo = api.repo(Repo::with_revision(
        repo.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = api_repo
        .info()
        .map_err(|e| hub_err("<repo info>", e.to_string()))?;
    let present: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    let mut wanted = vec!["config.json".to_string()];
    if present.contains(&"tokenizer.json") {
        wanted.push("tokenizer.json".to_string());
    }
    let weights = WEIGHT_CANDIDATES
        .iter()
        .find(|c| present.contains(c))
        .ok_or_else(|| {
            hub_err(
                "<weights>",
                format!("none of {WEIGHT_CANDIDATES:?} in the repo"),
            )
        })?;
    wanted.push(weights.to_string());
    let mut dir = None;
    for file in &wanted {
        let path = api_repo
            .get(file)
            .map_err(|e| hub_err(file, e.to_string()))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    if weights.ends_with(".index.json") {
        let dir = dir.clone().expect("at least one file fetched");
        for shard in super::weights::WeightFiles::locate(&dir).unwrap_or_default() {
            let name = shard
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            api_repo
                .get(&name)
                .map_err(|e| hub_err(&name, e.to_string()))?;
        }
    }
    Ok(HubSnapshot {
        dir: dir.expect("at least one file fetched"),
        commit: info.sha,
    })
}

/// Resolves a revision in the cache alone (`refs/<revision>`, or a commit hash itself).
pub fn cached_snapshot(repo: &str, revision: &str, settings: &HubSettings) -> Result<HubSnapshot> {
    let repo_dir = settings.cache_dir.join(
        Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()).folder_name(),
    );
    let missing = |message: String| ModelError::Hub {
        repo: repo.to_string(),
        revision: revision.to_string(),
        file: repo_dir.display().to_string(),
        message,
    };
    let ref_file = repo_dir.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(c) => c.trim().to_string(),
        Err(_) if is_commit_hash(revision) => revision.to_string(),
        Err(_) => {
            return Err(missing(format!(
                "not in the cache (no {}) and HF_HUB_OFFLINE is set",
                ref_file.display()
            )))
        }
    };
    let dir = repo_dir.join("snapshots").join(&commit);
    if !dir.join("config.json").is_file() {
        return Err(missing(format!(
            "snapshot {commit} has no config.json in the cache"
        )));
    }
    super::weights::WeightFiles::locate(&dir)?;
    Ok(HubSnapshot { dir, commit })
}

fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_with_and_without_revision() {
        assert_eq!(
            ModelSource::parse("EleutherAI/pythia-70m").unwrap(),
            ModelSource::Hub {
                repo: "EleutherAI/pythia-70m".into(),
                revision: "main".into()
            }
        );
        let step = ModelSource::parse("EleutherAI/pythia-70m@step3000").unwrap();
        assert_eq!(step.to_string(), "EleutherAI/pythia-70m@step3000");
        assert!(ModelSource::parse("no-such-dir").is_err());
        assert!(ModelSource::parse("./missing/dir").is_err());
    }

    #[test]
    fn settings_follow_huggingface_precedence() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = HubSettings::from_vars(vars(&[("HOME", "/h")]));
        assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert!(!s.offline);
        let s = HubSettings::from_vars(vars(&[("HF_HOME", "/x"), ("HF_HUB_OFFLINE", "1")]));
        assert_eq!(s.cache_dir, PathBuf::from("/x/hub"));
        assert!(s.offline);
        let s = HubSettings::from_vars(vars(&[("HF_HOME", "/x"), ("HF_HUB_CACHE", "/c")]));
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
    }
}
