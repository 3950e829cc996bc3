//! The decoding methods and their parameters.

use serde::{Deserialize, Serialize};

use super::registry::{method_spec, MethodSpec, Param};

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

/// The authors' static tree (`TreeSpeculativeGeneratorV2`): the draft's top-1 token is the root;
/// levels 1..=depth breadth first, every node whose cumulative draft probability reaches `tau`
/// gets its `branch` most probable children, until the tree holds `max_nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    pub depth: usize,
    pub branch: usize,
    pub tau: f64,
    pub max_nodes: usize,
}

/// The published DynaTree (`...AdaptiveV2`/`V3`): breadth from the draft's confidence, depth
/// gated by path probability, base depth and thresholds adapted from recent rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveParams {
    pub base_depth: usize,
    pub max_depth: usize,
    pub b_min: usize,
    pub b_mid: usize,
    pub b_max: usize,
    pub tau_h: f64,
    pub tau_l: f64,
    pub rho_stop: f64,
    pub rho_deep: f64,
    pub tau: f64,
    pub max_nodes: usize,
    pub window: usize,
    pub target_acceptance: f64,
    pub step: f64,
    pub dynamic_breadth: bool,
    pub dynamic_depth: bool,
}

/// A decoding method with all its parameters. The fields are the registry's parameter names
/// (`registry::METHODS`), which builds, checks and defaults them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Method {
    Ar,
    Linear {
        k: usize,
    },
    FixedTree(TreeParams),
    Dynatree(AdaptiveParams),
    HfAssisted {
        num_assistant_tokens: usize,
        schedule: Schedule,
        confidence_threshold: f64,
    },
}

impl Method {
    /// The registry's defaults for `name`.
    pub fn default_of(name: &str) -> Option<Self> {
        let spec = method_spec(name)?;
        Some(spec.build(&spec.defaults()).expect("defaults are valid"))
    }

    /// transformers 4.38-era defaults the paper ran with.
    pub fn hf_assisted_default() -> Self {
        Self::default_of("hf_assisted").expect("hf_assisted is registered")
    }

    pub fn spec(&self) -> &'static MethodSpec {
        method_spec(self.name()).expect("every method is registered")
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Ar => "ar",
            Self::Linear { .. } => "linear",
            Self::FixedTree(_) => "fixed_tree",
            Self::Dynatree(_) => "dynatree",
            Self::HfAssisted { .. } => "hf_assisted",
        }
    }

    pub fn is_baseline(&self) -> bool {
        matches!(self, Self::Ar)
    }

    /// Whether it drafts trees (verified with a tree mask) rather than chains.
    pub fn is_tree(&self) -> bool {
        matches!(self, Self::FixedTree(_) | Self::Dynatree(_))
    }

    /// The per-round denominator of the authors' acceptance (committed tokens, bonus included,
    /// over this): K for linear, D + 2 for trees as their tree scripts divide, with D the base
    /// depth in force for DynaTree. `None` where their scripts report no acceptance.
    pub fn paper_acceptance_slots(&self, base_depth: Option<usize>) -> Option<usize> {
        match self {
            Self::Linear { k } => Some(*k),
            Self::FixedTree(p) => Some(p.depth + 2),
            Self::Dynatree(p) => Some(base_depth.unwrap_or(p.base_depth) + 2),
            Self::Ar | Self::HfAssisted { .. } => None,
        }
    }

    /// Positions a round may draft past the last token to generate: chains stop there, trees
    /// are drafted whole (a path holds up to D + 1 tokens; DynaTree's up to Dmax, or D0 + 1
    /// with fixed depth, D0 growing to Dmax − 1 with history).
    pub fn lookahead(&self) -> usize {
        match self {
            Self::FixedTree(p) => p.depth + 1,
            Self::Dynatree(p) => p.max_depth.max(p.base_depth + 1),
            Self::Ar | Self::Linear { .. } | Self::HfAssisted { .. } => 0,
        }
    }

    /// `name key=value ...` with parameters in registry order, for people.
    pub fn describe(&self) -> String {
        let spec = self.spec();
        let mut parts = vec![spec.name.to_string()];
        for (p, v) in spec.params.iter().zip(self.values()) {
            let shown = match v {
                Param::Schedule(s) => serde_json::to_value(s)
                    .expect("schedules serialize")
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                other => other.to_string(),
            };
            parts.push(format!("{}={shown}", p.name));
        }
        parts.join(" ")
    }

    pub fn needs_draft(&self) -> bool {
        self.spec().needs_draft
    }

    /// The parameters alone, as a JSON object (`{}` for AR): what serde writes for the method
    /// without its tag.
    pub fn params(&self) -> serde_json::Value {
        let spec = self.spec();
        let map = spec
            .params
            .iter()
            .zip(self.values())
            .map(|(p, v)| {
                let value = serde_json::to_value(v).expect("params serialize");
                (p.name.to_string(), value)
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// The parameter values in registry order. Written out rather than read back from serde
    /// (planning a large grid calls it per point); a test holds it to the serde form.
    pub fn values(&self) -> Vec<Param> {
        use Param::{Count as C, Probability as P, Switch as S};
        match *self {
            Self::Ar => Vec::new(),
            Self::Linear { k } => vec![C(k)],
            Self::FixedTree(p) => vec![C(p.depth), C(p.branch), P(p.tau), C(p.max_nodes)],
            Self::Dynatree(p) => vec![
                C(p.base_depth),
                C(p.max_depth),
                C(p.b_min),
                C(p.b_mid),
                C(p.b_max),
                P(p.tau_h),
                P(p.tau_l),
                P(p.rho_stop),
                P(p.rho_deep),
                P(p.tau),
                C(p.max_nodes),
                C(p.window),
                P(p.target_acceptance),
                P(p.step),
                S(p.dynamic_breadth),
                S(p.dynamic_depth),
            ],
            Self::HfAssisted {
                num_assistant_tokens,
                schedule,
                confidence_threshold,
            } => vec![
                C(num_assistant_tokens),
                Param::Schedule(schedule),
                P(confidence_threshold),
            ],
        }
    }

    /// The value of parameter `name`, if the method has it.
    pub fn value(&self, name: &str) -> Option<Param> {
        let at = self.spec().params.iter().position(|p| p.name == name)?;
        Some(self.values()[at])
    }

    /// Checks ranges and the relations between parameters; the message names the parameter.
    pub fn validate(&self) -> Result<(), String> {
        for (spec, value) in self.spec().params.iter().zip(self.values()) {
            spec.check(&value)
                .map_err(|e| format!("{} {e}", self.name()))?;
        }
        self.validate_relations()
    }

    /// The relations between parameters (each value's own range checked already).
    pub(super) fn validate_relations(&self) -> Result<(), String> {
        match self {
            Self::Dynatree(p) => p.validate_relations(),
            _ => Ok(()),
        }
    }
}

impl AdaptiveParams {
    fn validate_relations(&self) -> Result<(), String> {
        let fail = |what: String| Err(format!("dynatree {what}"));
        if !(self.b_min <= self.b_mid && self.b_mid <= self.b_max) {
            return fail(format!(
                "needs b_min <= b_mid <= b_max, got {} / {} / {}",
                self.b_min, self.b_mid, self.b_max
            ));
        }
        if self.tau_l > self.tau_h {
            return fail(format!(
                "needs tau_l <= tau_h, got tau_l = {} and tau_h = {}",
                self.tau_l, self.tau_h
            ));
        }
        if self.dynamic_depth && self.base_depth >= self.max_depth {
            return fail(format!(
                "needs base_depth < max_depth, got {} and {}",
                self.base_depth, self.max_depth
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_tree() -> Method {
        Method::FixedTree(TreeParams {
            depth: 6,
            branch: 2,
            tau: 0.03,
            max_nodes: 32,
        })
    }

    #[test]
    fn params_drop_the_tag() {
        assert_eq!(
            fixed_tree().params(),
            serde_json::json!({"depth": 6, "branch": 2, "tau": 0.03, "max_nodes": 32})
        );
        assert_eq!(Method::Ar.params(), serde_json::json!({}));
        assert_eq!(
            fixed_tree().describe(),
            "fixed_tree depth=6 branch=2 tau=0.03 max_nodes=32"
        );
        assert_eq!(
            Method::hf_assisted_default().params()["schedule"],
            serde_json::json!("heuristic")
        );
        assert_eq!(fixed_tree().value("tau"), Some(Param::Probability(0.03)));
    }

    #[test]
    fn the_paper_defaults_are_the_registry_defaults() {
        let Some(Method::Dynatree(p)) = Method::default_of("dynatree") else {
            panic!("dynatree is registered");
        };
        assert_eq!((p.base_depth, p.max_depth), (5, 8));
        assert_eq!((p.b_min, p.b_mid, p.b_max), (1, 2, 3));
        assert_eq!(
            (p.tau_h, p.tau_l, p.rho_stop, p.rho_deep),
            (0.9, 0.4, 0.1, 0.5)
        );
        assert_eq!((p.tau, p.max_nodes, p.window), (0.05, 256, 10));
        assert_eq!((p.target_acceptance, p.step), (0.7, 0.05));
        assert!(p.dynamic_breadth && p.dynamic_depth);
    }

    #[test]
    fn validation_names_the_parameter() {
        assert!(Method::Linear { k: 0 }
            .validate()
            .unwrap_err()
            .contains("k"));
        let Method::FixedTree(p) = fixed_tree() else {
            unreachable!()
        };
        let bad_tau = Method::FixedTree(TreeParams { tau: 1.5, ..p });
        assert!(bad_tau.validate().unwrap_err().contains("tau"));
        assert!("sometimes".parse::<Schedule>().is_err());
        let Some(Method::Dynatree(d)) = Method::default_of("dynatree") else {
            unreachable!()
        };
        let inverted = Method::Dynatree(AdaptiveParams { b_min: 4, ..d });
        assert!(inverted.validate().unwrap_err().contains("b_min <= b_mid"));
        let shallow = Method::Dynatree(AdaptiveParams { max_depth: 5, ..d });
        assert!(shallow
            .validate()
            .unwrap_err()
            .contains("base_depth < max_depth"));
    }
}
