//! The one list of decoding methods: each method's name, table label, parameters (kind,
//! default, symbol) and whether it needs a draft model. The manifest, the grid, the CLI and the
//! report all read it; adding a method is one entry here, one `Method` variant whose fields are
//! the parameters' names, and its drafting code.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::method::{Method, Schedule};

/// One parameter value. Serialized bare (`6`, `0.03`, `"heuristic"`, `true`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    Switch(bool),
    Count(usize),
    Probability(f64),
    Schedule(Schedule),
}

/// What values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// An integer >= 1.
    Count,
    /// An integer >= 0.
    Natural,
    /// A number within [0, 1].
    Probability,
    /// "heuristic" or "constant".
    Schedule,
    /// true or false.
    Switch,
}

/// A method's parameter: its name (the manifest key and the `Method` field), kind, default and
/// the symbol tables use for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: Param,
    /// `K`, `D`, `τ`, ...: how a label writes it; `None` keeps it out of labels.
    pub symbol: Option<&'static str>,
    /// Shown in every label of the method, not only when it varies among the labelled runs.
    pub always_labelled: bool,
    /// The largest value a count may take: sizes beyond it would not fit any model's context
    /// or memory (a 100,000-node tree needs a 40 GB mask).
    pub max: usize,
    pub help: &'static str,
}

#[derive(Debug)]
pub struct MethodSpec {
    pub name: &'static str,
    /// What tables call it ("Linear Spec", "Fixed Tree"); a manifest may rename it.
    pub label: &'static str,
    pub needs_draft: bool,
    /// In grid order: the last varies fastest.
    pub params: &'static [ParamSpec],
    pub help: &'static str,
}

const fn param(
    name: &'static str,
    kind: ParamKind,
    default: Param,
    symbol: Option<&'static str>,
    always_labelled: bool,
    help: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        default,
        symbol,
        always_labelled,
        max: usize::MAX,
        help,
    }
}

impl ParamSpec {
    const fn up_to(mut self, max: usize) -> Self {
        self.max = max;
        self
    }
}

/// Depths, breadths and chain lengths: far beyond what pays, well within any context.
const MAX_DEPTH: usize = 64;
/// Nodes verified in one pass.
const MAX_NODES: usize = 4096;

use Param::{Count as C, Probability as P, Switch as S};
use ParamKind::{Count, Natural, Probability, Switch};

const LINEAR: [ParamSpec; 1] =
    [param("k", Count, C(6), Some("K"), true, "draft tokens per round").up_to(MAX_DEPTH)];

const FIXED_TREE: [ParamSpec; 4] = [
    param(
        "depth",
        Count,
        C(6),
        Some("D"),
        true,
        "levels below the root",
    )
    .up_to(MAX_DEPTH),
    param(
        "branch",
        Count,
        C(2),
        Some("B"),
        true,
        "children per expanded node",
    )
    .up_to(MAX_DEPTH),
    param(
        "tau",
        Probability,
        P(0.05),
        Some("τ"),
        true,
        "nodes below this cumulative draft probability are not expanded",
    ),
    param("max_nodes", Count, C(32), Some("N"), false, "node budget").up_to(MAX_NODES),
];

const DYNATREE: [ParamSpec; 16] = [
    param(
        "base_depth",
        Count,
        C(5),
        Some("D0"),
        false,
        "base depth D0",
    )
    .up_to(MAX_DEPTH),
    param(
        "max_depth",
        Count,
        C(8),
        Some("Dmax"),
        false,
        "hard depth limit",
    )
    .up_to(MAX_DEPTH),
    param(
        "b_min",
        Count,
        C(1),
        Some("Bmin"),
        false,
        "breadth when confident",
    )
    .up_to(MAX_DEPTH),
    param(
        "b_mid",
        Count,
        C(2),
        Some("Bmid"),
        false,
        "breadth otherwise",
    )
    .up_to(MAX_DEPTH),
    param(
        "b_max",
        Count,
        C(3),
        Some("Bmax"),
        false,
        "breadth when unsure",
    )
    .up_to(MAX_DEPTH),
    param(
        "tau_h",
        Probability,
        P(0.9),
        Some("τh"),
        false,
        "confident above this",
    ),
    param(
        "tau_l",
        Probability,
        P(0.4),
        Some("τl"),
        false,
        "unsure below this",
    ),
    param(
        "rho_stop",
        Probability,
        P(0.1),
        Some("ρstop"),
        false,
        "no expansion below this path probability",
    ),
    param(
        "rho_deep",
        Probability,
        P(0.5),
        Some("ρdeep"),
        false,
        "expansion beyond D0 only above this path probability",
    ),
    param(
        "tau",
        Probability,
        P(0.05),
        Some("τ"),
        false,
        "pruning threshold",
    ),
    param("max_nodes", Count, C(256), Some("N"), false, "node budget").up_to(MAX_NODES),
    param(
        "window",
        Natural,
        C(10),
        Some("W"),
        false,
        "history window in rounds; 0 turns history adaptation off",
    )
    .up_to(1_000_000),
    param(
        "target_acceptance",
        Probability,
        P(0.7),
        Some("a*"),
        false,
        "acceptance history adaptation aims at",
    ),
    param(
        "step",
        Probability,
        P(0.05),
        Some("η"),
        false,
        "adaptation step",
    ),
    param(
        "dynamic_breadth",
        Switch,
        S(true),
        Some("breadth"),
        false,
        "breadth from the draft's confidence; off: b_mid everywhere",
    ),
    param(
        "dynamic_depth",
        Switch,
        S(true),
        Some("depth"),
        false,
        "depth gated by path probability; off: levels 1..D0 as a fixed tree",
    ),
];

const HF_ASSISTED: [ParamSpec; 3] = [
    param(
        "num_assistant_tokens",
        Count,
        C(5),
        Some("n"),
        false,
        "initial draft tokens per round",
    )
    .up_to(MAX_DEPTH),
    param(
        "schedule",
        ParamKind::Schedule,
        Param::Schedule(Schedule::Heuristic),
        Some(""),
        false,
        "heuristic (transformers' default) or constant",
    ),
    param(
        "confidence_threshold",
        Probability,
        P(0.0),
        Some("c"),
        false,
        "stop drafting after a token below this draft probability",
    ),
];

/// Every method, in the order tables list them.
pub const METHODS: [MethodSpec; 5] = [
    MethodSpec {
        name: "ar",
        label: "AR",
        needs_draft: false,
        params: &[],
        help: "autoregressive decoding of the target (the baseline)",
    },
    MethodSpec {
        name: "linear",
        label: "Linear Spec",
        needs_draft: true,
        params: &LINEAR,
        help: "the draft proposes a chain of K tokens, verified in one target pass",
    },
    MethodSpec {
        name: "fixed_tree",
        label: "Fixed Tree",
        needs_draft: true,
        params: &FIXED_TREE,
        help: "the authors' static tree: top-B children of every node above tau, to depth D",
    },
    MethodSpec {
        name: "dynatree",
        label: "DynaTree",
        needs_draft: true,
        params: &DYNATREE,
        help: "the adaptive tree: confidence breadth, probability-gated depth, history",
    },
    MethodSpec {
        name: "hf_assisted",
        label: "HF Assisted",
        needs_draft: true,
        params: &HF_ASSISTED,
        help: "transformers' assisted generation schedule",
    },
];

/// The method called `name`.
pub fn method_spec(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

/// Every method name, for messages: `ar, linear, ...`.
pub fn method_names() -> String {
    METHODS.map(|m| m.name).join(", ")
}

impl MethodSpec {
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn defaults(&self) -> Vec<Param> {
        self.params.iter().map(|p| p.default).collect()
    }

    /// The method with these values, one per parameter in `params` order, range-checked.
    pub fn build(&self, values: &[Param]) -> Result<Method, String> {
        assert_eq!(values.len(), self.params.len(), "one value per parameter");
        let mut object = serde_json::Map::new();
        object.insert("method".into(), self.name.into());
        for (spec, value) in self.params.iter().zip(values) {
            spec.check(value)?;
            let json = serde_json::to_value(value).expect("params serialize");
            object.insert(spec.name.into(), json);
        }
        let method: Method = serde_json::from_value(object.into())
            .unwrap_or_else(|e| panic!("registry entry {} is not its Method: {e}", self.name));
        method.validate_relations()?;
        Ok(method)
    }

    /// `build` with defaults for the parameters not in `given` (name, value).
    pub fn build_with(&self, given: &[(&str, Param)]) -> Result<Method, String> {
        if let Some((name, _)) = given.iter().find(|(n, _)| self.param(n).is_none()) {
            return Err(self.unknown_param(name));
        }
        let values: Vec<Param> = self
            .params
            .iter()
            .map(|p| {
                given
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == p.name)
                    .map_or(p.default, |(_, v)| *v)
            })
            .collect();
        self.build(&values)
    }

    pub fn unknown_param(&self, name: &str) -> String {
        if self.params.is_empty() {
            return format!("method {} takes no parameters, got {name:?}", self.name);
        }
        let names: Vec<&str> = self.params.iter().map(|p| p.name).collect();
        format!(
            "method {} has no parameter {name:?}; its parameters are {}",
            self.name,
            names.join(", ")
        )
    }
}

impl ParamSpec {
    /// The value is of this parameter's kind and within its range.
    pub fn check(&self, value: &Param) -> Result<(), String> {
        let ok = match (self.kind, value) {
            (ParamKind::Count, Param::Count(n)) => (1..=self.max).contains(n),
            (ParamKind::Natural, Param::Count(n)) => *n <= self.max,
            (ParamKind::Probability, Param::Probability(p)) => (0.0..=1.0).contains(p),
            (ParamKind::Schedule, Param::Schedule(_)) | (ParamKind::Switch, Param::Switch(_)) => {
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} must be {}, got {value}",
                self.name,
                self.expected()
            ))
        }
    }

    /// Parses a command-line value (`6`, `0.05`, `heuristic`, `true`).
    pub fn parse(&self, text: &str) -> Result<Param, String> {
        let bad = || format!("{} must be {}, got {text:?}", self.name, self.expected());
        let value = match self.kind {
            ParamKind::Count | ParamKind::Natural => Param::Count(text.parse().map_err(|_| bad())?),
            ParamKind::Probability => Param::Probability(text.parse().map_err(|_| bad())?),
            ParamKind::Schedule => Param::Schedule(text.parse()?),
            ParamKind::Switch => Param::Switch(text.parse().map_err(|_| bad())?),
        };
        self.check(&value)?;
        Ok(value)
    }
}

impl ParamSpec {
    /// What a valid value is, for messages: `an integer in 1..=4096`.
    pub fn expected(&self) -> String {
        match self.kind {
            ParamKind::Count if self.max < usize::MAX => format!("an integer in 1..={}", self.max),
            ParamKind::Natural if self.max < usize::MAX => {
                format!("an integer in 0..={}", self.max)
            }
            kind => kind.expected().to_string(),
        }
    }
}

impl ParamKind {
    pub fn expected(&self) -> &'static str {
        match self {
            Self::Count => "an integer >= 1",
            Self::Natural => "an integer >= 0",
            Self::Probability => "a number within [0, 1]",
            Self::Schedule => "\"heuristic\" or \"constant\"",
            Self::Switch => "true or false",
        }
    }
}

impl Param {
    /// A hashable identity: equal bits for equal values of one kind.
    pub fn bits(&self) -> u64 {
        match *self {
            Self::Count(n) => n as u64,
            Self::Probability(p) => p.to_bits(),
            Self::Schedule(Schedule::Heuristic) | Self::Switch(false) => 0,
            Self::Schedule(Schedule::Constant) | Self::Switch(true) => 1,
        }
    }

    pub fn as_count(&self) -> Option<usize> {
        match *self {
            Self::Count(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_probability(&self) -> Option<f64> {
        match *self {
            Self::Probability(p) => Some(p),
            _ => None,
        }
    }

    /// The value of `kind` a JSON value holds (as `Method` serializes it).
    pub fn from_json(value: &serde_json::Value, kind: ParamKind) -> Option<Self> {
        match kind {
            ParamKind::Count | ParamKind::Natural => {
                value.as_u64().map(|n| Self::Count(n as usize))
            }
            ParamKind::Probability => value.as_f64().map(Self::Probability),
            ParamKind::Schedule => serde_json::from_value(value.clone())
                .ok()
                .map(Self::Schedule),
            ParamKind::Switch => value.as_bool().map(Self::Switch),
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Probability(p) => write!(f, "{p}"),
            Self::Schedule(Schedule::Heuristic) => write!(f, "\"heuristic\""),
            Self::Schedule(Schedule::Constant) => write!(f, "\"constant\""),
            Self::Switch(b) => write!(f, "{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_its_defaults_and_reads_them_back() {
        for spec in &METHODS {
            let method = spec.build(&spec.defaults()).unwrap();
            assert_eq!(method.name(), spec.name);
            assert_eq!(method.values(), spec.defaults(), "{}", spec.name);
            assert_eq!(method.needs_draft(), spec.needs_draft);
        }
    }

    /// `values` and `params` are written out by hand: they must say what serde says, for every
    /// parameter of every method (each changed alone, so that two swapped fields would show).
    #[test]
    fn values_and_params_agree_with_the_serde_form() {
        let other = |p: Param| match p {
            Param::Count(n) => Param::Count(n + 1),
            Param::Probability(x) => Param::Probability(if x < 0.5 { x + 0.25 } else { x - 0.25 }),
            Param::Switch(b) => Param::Switch(!b),
            Param::Schedule(Schedule::Heuristic) => Param::Schedule(Schedule::Constant),
            Param::Schedule(Schedule::Constant) => Param::Schedule(Schedule::Heuristic),
        };
        for spec in &METHODS {
            for changed in 0..=spec.params.len() {
                let mut values = spec.defaults();
                if let Some(v) = values.get_mut(changed) {
                    *v = other(*v);
                }
                let method = spec.build(&values).unwrap();
                let mut serde_form = serde_json::to_value(&method).unwrap();
                serde_form.as_object_mut().unwrap().remove("method");
                assert_eq!(method.params(), serde_form, "{}", spec.name);
                let read_back: Vec<Param> = spec
                    .params
                    .iter()
                    .map(|p| Param::from_json(&serde_form[p.name], p.kind).unwrap())
                    .collect();
                assert_eq!(method.values(), read_back, "{}", spec.name);
                assert_eq!(method.values(), values, "{}", spec.name);
            }
        }
    }

    #[test]
    fn values_are_range_checked_by_name() {
        let linear = method_spec("linear").unwrap();
        let err = linear.build(&[Param::Count(0)]).unwrap_err();
        assert_eq!(err, "k must be an integer in 1..=64, got 0");
        let huge = method_spec("fixed_tree")
            .unwrap()
            .param("max_nodes")
            .unwrap();
        assert_eq!(
            huge.parse("100000").unwrap_err(),
            "max_nodes must be an integer in 1..=4096, got 100000"
        );
        let tree = method_spec("fixed_tree").unwrap();
        let err = tree
            .build_with(&[("tau", Param::Probability(1.5))])
            .unwrap_err();
        assert!(
            err.starts_with("tau must be a number within [0, 1]"),
            "{err}"
        );
        let err = tree.build_with(&[("k", Param::Count(3))]).unwrap_err();
        assert!(err.contains("no parameter \"k\""), "{err}");
        let window = method_spec("dynatree").unwrap().param("window").unwrap();
        assert_eq!(window.parse("0").unwrap(), Param::Count(0));
        assert!(window.parse("-1").is_err());
    }
}
