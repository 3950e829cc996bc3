//! The decoding methods and their parameters.

use serde::{Deserialize, Serialize};

/// How `hf_assisted` adapts the number of draft tokens between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// transformers' "heuristic": +2 after a round whose drafts were all accepted, else -1 (min 1).
    Heuristic,
    /// A fixed number of draft tokens.
    Constant,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "heuristic" => Ok(Self::Heuristic),
            "constant" => Ok(Self::Constant),
            other => Err(format!(
                "unknown schedule {other:?}; expected heuristic or constant"
            )),
        }
    }
}

/// DynaTree's tree shape: depth, branching, probability floor and node budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    pub depth: usize,
    pub branch: usize,
    pub tau: f64,
    pub max_nodes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    Ar,
    Linear {
        k: usize,
    },
    Dynatree(TreeParams),
    HfAssisted {
        num_assistant_tokens: usize,
        schedule: Schedule,
        confidence_threshold: f64,
    },
}

impl Method {
    pub const NAMES: [&'static str; 4] = ["ar", "linear", "dynatree", "hf_assisted"];

    /// transformers 4.38-era defaults the paper ran with.
    pub fn hf_assisted_default() -> Self {
        Self::HfAssisted {
            num_assistant_tokens: 5,
            schedule: Schedule::Heuristic,
            confidence_threshold: 0.0,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Ar => "ar",
            Self::Linear { .. } => "linear",
            Self::Dynatree(_) => "dynatree",
            Self::HfAssisted { .. } => "hf_assisted",
        }
    }

    /// The per-round denominator of the authors' acceptance (committed tokens, bonus included,
    /// over rounds × this): K for linear, D + 2 for trees as their tree scripts divide. `None`
    /// where their scripts report no acceptance (AR, HF assisted).
    pub fn paper_acceptance_slots(&self) -> Option<usize> {
        match self {
            Self::Linear { k } => Some(*k),
            Self::Dynatree(p) => Some(p.depth + 2),
            Self::Ar | Self::HfAssisted { .. } => None,
        }
    }

    /// `name key=value ...` with parameters in their natural order, for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Ar => "ar".into(),
            Self::Linear { k } => format!("linear k={k}"),
            Self::Dynatree(p) => format!(
                "dynatree depth={} branch={} tau={} max_nodes={}",
                p.depth, p.branch, p.tau, p.max_nodes
            ),
            Self::HfAssisted {
                num_assistant_tokens,
                schedule,
                confidence_threshold,
            } => format!(
                "hf_assisted num_assistant_tokens={num_assistant_tokens} schedule={} confidence_threshold={confidence_threshold}",
                serde_json::to_value(schedule).expect("schedules serialize").as_str().unwrap_or_default()
            ),
        }
    }

    pub fn needs_draft(&self) -> bool {
        !matches!(self, Self::Ar)
    }

    /// The parameters alone, as a JSON object (`{}` for AR).
    pub fn params(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("methods serialize");
        if let Some(map) = value.as_object_mut() {
            map.remove("method");
        }
        value
    }

    /// Checks parameter ranges; the message names the offending parameter.
    pub fn validate(&self) -> Result<(), String> {
        let at_least_one = |name: &str, v: usize| {
            if v == 0 {
                Err(format!("{} {name} must be at least 1, got 0", self.name()))
            } else {
                Ok(())
            }
        };
        let probability = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "{} {name} must be within [0, 1], got {v}",
                    self.name()
                ))
            }
        };
        match *self {
            Self::Ar => Ok(()),
            Self::Linear { k } => at_least_one("k", k),
            Self::Dynatree(p) => {
                at_least_one("depth", p.depth)?;
                at_least_one("branch", p.branch)?;
                at_least_one("max_nodes", p.max_nodes)?;
                probability("tau", p.tau)
            }
            Self::HfAssisted {
                num_assistant_tokens,
                confidence_threshold,
                ..
            } => {
                at_least_one("num_assistant_tokens", num_assistant_tokens)?;
                probability("confidence_threshold", confidence_threshold)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_drop_the_tag() {
        let m = Method::Dynatree(TreeParams {
            depth: 6,
            branch: 2,
            tau: 0.03,
            max_nodes: 32,
        });
        assert_eq!(
            m.params(),
            serde_json::json!({"depth": 6, "branch": 2, "tau": 0.03, "max_nodes": 32})
        );
        assert_eq!(Method::Ar.params(), serde_json::json!({}));
        assert_eq!(
            m.describe(),
            "dynatree depth=6 branch=2 tau=0.03 max_nodes=32"
        );
        assert_eq!(
            Method::hf_assisted_default().params()["schedule"],
            serde_json::json!("heuristic")
        );
    }

    #[test]
    fn validation_names_the_parameter() {
        assert!(Method::Linear { k: 0 }
            .validate()
            .unwrap_err()
            .contains("k"));
        let bad_tau = Method::Dynatree(TreeParams {
            depth: 3,
            branch: 2,
            tau: 1.5,
            max_nodes: 8,
        });
        assert!(bad_tau.validate().unwrap_err().contains("tau"));
        assert!("sometimes".parse::<Schedule>().is_err());
    }
}
