//! The `[sweep]` section: datasets and methods to run, each method's parameter axes (with
//! optional zipping), and points to exclude.
//!
//! Everything a sweep names must select something: a per-method table for a method that is not
//! listed, an empty axis, or an exclude that matches no point is an error, because each would
//! otherwise silently change what the experiment measures.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Serialize;

use super::reader::{Table, Value};
use super::{Location, ManifestError};
use crate::decode::{Method, Schedule};

type Result<T> = std::result::Result<T, ManifestError>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// Dataset names in the order written; the outer loop of the grid.
    pub dataset: Vec<String>,
    /// Methods in the order written (`ar` included only if written), with their axes.
    pub method: Vec<MethodAxes>,
    pub exclude: Vec<Exclude>,
}

/// One method's parameter axes, all of them, in the method's fixed order (see `axis_specs`),
/// defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodAxes {
    /// One of `Method::NAMES`.
    pub method: &'static str,
    pub axes: Vec<Axis>,
    /// Groups of axes that vary together element-wise, as written; each axis in at most one.
    pub zip: Vec<Vec<&'static str>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis {
    pub name: &'static str,
    /// Never empty; distinct unless the axis is zipped (then the zipped rows are distinct).
    pub values: Vec<Param>,
}

/// One parameter value. Serialized bare (`6`, `0.03`, `"heuristic"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    Count(usize),
    Probability(f64),
    Schedule(Schedule),
}

/// What values an axis takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// An integer >= 1.
    Count,
    /// A number within [0, 1].
    Probability,
    /// "heuristic" or "constant".
    Schedule,
}

/// An axis of a method: its name, kind and the value used when the manifest omits it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: Param,
}

/// A rule dropping every grid point that matches all of its keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclude {
    /// As written, or the method owning the parameters named (parameter names are unique
    /// across methods).
    pub method: &'static str,
    pub dataset: Option<String>,
    pub params: BTreeMap<&'static str, Param>,
    /// Where the rule is written, for "matches no point" errors.
    #[serde(skip)]
    pub at: Location,
}

const fn spec(name: &'static str, kind: ParamKind, default: Param) -> AxisSpec {
    AxisSpec {
        name,
        kind,
        default,
    }
}

const LINEAR: [AxisSpec; 1] = [spec("k", ParamKind::Count, Param::Count(6))];
const DYNATREE: [AxisSpec; 4] = [
    spec("depth", ParamKind::Count, Param::Count(6)),
    spec("branch", ParamKind::Count, Param::Count(2)),
    spec("tau", ParamKind::Probability, Param::Probability(0.03)),
    spec("max_nodes", ParamKind::Count, Param::Count(32)),
];
const HF_ASSISTED: [AxisSpec; 3] = [
    spec("num_assistant_tokens", ParamKind::Count, Param::Count(5)),
    spec(
        "schedule",
        ParamKind::Schedule,
        Param::Schedule(Schedule::Heuristic),
    ),
    spec(
        "confidence_threshold",
        ParamKind::Probability,
        Param::Probability(0.0),
    ),
];

/// A method's axes in grid order (the last varies fastest); empty for `ar` and unknown names.
pub fn axis_specs(method: &str) -> &'static [AxisSpec] {
    match method {
        "linear" => &LINEAR,
        "dynatree" => &DYNATREE,
        "hf_assisted" => &HF_ASSISTED,
        _ => &[],
    }
}

impl Param {
    pub fn kind(&self) -> ParamKind {
        match self {
            Self::Count(_) => ParamKind::Count,
            Self::Probability(_) => ParamKind::Probability,
            Self::Schedule(_) => ParamKind::Schedule,
        }
    }

    /// A hashable identity: equal bits for equal values of one kind.
    pub fn bits(&self) -> u64 {
        match *self {
            Self::Count(n) => n as u64,
            Self::Probability(p) => p.to_bits(),
            Self::Schedule(Schedule::Heuristic) => 0,
            Self::Schedule(Schedule::Constant) => 1,
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

    pub fn as_schedule(&self) -> Option<Schedule> {
        match *self {
            Self::Schedule(s) => Some(s),
            _ => None,
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
        }
    }
}

impl MethodAxes {
    pub fn axis(&self, name: &str) -> Option<&Axis> {
        self.axes.iter().find(|axis| axis.name == name)
    }

    /// The zip groups as axis indices.
    pub fn zip_indices(&self) -> Vec<Vec<usize>> {
        let index = |name: &str| self.axes.iter().position(|a| a.name == name);
        let groups = self
            .zip
            .iter()
            .map(|g| g.iter().filter_map(|n| index(n)).collect());
        groups.collect()
    }
}

/// What the sweep is checked against.
pub(crate) struct Context<'c> {
    /// Defined datasets and where (`[datasets.NAME]`).
    pub datasets: &'c BTreeMap<String, Range<usize>>,
    pub has_draft: bool,
}

const PER_METHOD: [&str; 3] = ["linear", "dynatree", "hf_assisted"];

pub(crate) fn parse(value: &Value, cx: &Context) -> Result<Sweep> {
    let t = value.plain_table(&[
        "dataset",
        "method",
        "linear",
        "dynatree",
        "hf_assisted",
        "exclude",
    ])?;
    let dataset = datasets(&t, cx)?;
    let methods = methods(&t, cx)?;
    tables_have_methods(&t, &methods)?;
    let method = methods
        .iter()
        .map(|name| method_axes(name, t.get(name)))
        .collect::<Result<Vec<_>>>()?;
    let exclude = match t.get("exclude") {
        Some(value) => excludes(&value, &dataset, &method)?,
        None => Vec::new(),
    };
    Ok(Sweep {
        dataset,
        method,
        exclude,
    })
}

/// `sweep.dataset`: known, distinct, and covering every defined dataset.
fn datasets(t: &Table, cx: &Context) -> Result<Vec<String>> {
    let known = || cx.datasets.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut names: Vec<String> = Vec::new();
    for item in t.req("dataset")?.non_empty_array()? {
        let name = item.str()?;
        if !cx.datasets.contains_key(name) {
            return Err(item.error(format!(
                "unknown dataset {name:?}; expected one of {} (the [datasets.NAME] tables)",
                known()
            )));
        }
        if names.iter().any(|n| n == name) {
            return Err(item.error(format!("dataset {name:?} is listed twice")));
        }
        names.push(name.to_string());
    }
    unused_datasets(t, cx, &names)?;
    Ok(names)
}

/// A defined dataset that no run uses is a sign of a forgotten edit, like a stray method table.
fn unused_datasets(t: &Table, cx: &Context, used: &[String]) -> Result<()> {
    let unused = cx.datasets.iter().find(|(name, _)| !used.contains(name));
    match unused {
        None => Ok(()),
        Some((name, span)) => Err(t.error_at(
            span,
            format!(
                "dataset {name:?} is defined but not in sweep.dataset; \
                 add it there or remove [datasets.{name}]"
            ),
        )),
    }
}

/// `sweep.method`: known, distinct, with a draft model when any method drafts.
fn methods(t: &Table, cx: &Context) -> Result<Vec<&'static str>> {
    let mut names: Vec<&'static str> = Vec::new();
    for item in t.req("method")?.non_empty_array()? {
        let name = known_method(&item)?;
        if names.contains(&name) {
            return Err(item.error(format!("method {name:?} is listed twice")));
        }
        if name != "ar" && !cx.has_draft {
            return Err(item.error(format!(
                "method {name:?} needs a draft model; add models.draft"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

fn known_method(item: &Value) -> Result<&'static str> {
    let name = item.str()?;
    Method::NAMES
        .into_iter()
        .find(|known| *known == name)
        .ok_or_else(|| {
            item.error(format!(
                "unknown method {name:?}; expected one of {}",
                Method::NAMES.join(", ")
            ))
        })
}

/// A per-method table for an unlisted method would silently do nothing.
fn tables_have_methods(t: &Table, methods: &[&str]) -> Result<()> {
    for name in PER_METHOD {
        if let Some(table) = t.get(name) {
            if !methods.contains(&name) {
                return Err(table.error_unprefixed(format!(
                    "[sweep.{name}] is given but {name:?} is not in sweep.method; \
                     add it there or remove the table"
                )));
            }
        }
    }
    Ok(())
}

/// An axis as written: the array and its elements, for positions.
struct Written<'a> {
    value: Value<'a>,
    items: Vec<Value<'a>>,
}

fn method_axes(method: &'static str, table: Option<Value>) -> Result<MethodAxes> {
    let specs = axis_specs(method);
    let mut allowed: Vec<&str> = specs.iter().map(|s| s.name).collect();
    allowed.push("zip");
    let table = match &table {
        Some(value) => Some(value.plain_table(&allowed)?),
        None => None,
    };
    let mut axes = Vec::with_capacity(specs.len());
    let mut written = Vec::with_capacity(specs.len());
    for spec in specs {
        let value = table.as_ref().and_then(|t| t.get(spec.name));
        let (axis, items) = axis(spec, value)?;
        axes.push(axis);
        written.push(items);
    }
    let zip = match table.as_ref().and_then(|t| t.get("zip")) {
        Some(value) => zip_groups(&value, &axes, &written)?,
        None => Vec::new(),
    };
    let method_axes = MethodAxes { method, axes, zip };
    distinct_points(&method_axes, &written, table.as_ref())?;
    Ok(method_axes)
}

fn axis<'a>(spec: &AxisSpec, value: Option<Value<'a>>) -> Result<(Axis, Option<Written<'a>>)> {
    let Some(value) = value else {
        let axis = Axis {
            name: spec.name,
            values: vec![spec.default],
        };
        return Ok((axis, None));
    };
    let items = value.non_empty_array()?;
    let values = items
        .iter()
        .map(|item| param(item, spec.kind))
        .collect::<Result<Vec<_>>>()?;
    let axis = Axis {
        name: spec.name,
        values,
    };
    Ok((axis, Some(Written { value, items })))
}

/// One value, range-checked as `Method::validate` would.
fn param(value: &Value, kind: ParamKind) -> Result<Param> {
    match kind {
        ParamKind::Count => Ok(Param::Count(value.count()?)),
        ParamKind::Probability => Ok(Param::Probability(value.probability()?)),
        ParamKind::Schedule => value
            .str()?
            .parse::<Schedule>()
            .map(Param::Schedule)
            .map_err(|e| value.error(e)),
    }
}

/// `zip = [["depth", "max_nodes"], ...]`: known axes, each zipped once, equal lengths.
fn zip_groups(
    value: &Value,
    axes: &[Axis],
    written: &[Option<Written>],
) -> Result<Vec<Vec<&'static str>>> {
    let names: Vec<&str> = axes.iter().map(|a| a.name).collect();
    let mut used = vec![false; axes.len()];
    let mut groups = Vec::new();
    for group in value.array()? {
        let items = group.array()?;
        if items.len() < 2 {
            return Err(group.error("a zip group needs at least two axes"));
        }
        let mut indices = Vec::with_capacity(items.len());
        for item in &items {
            let name = item.str()?;
            let Some(i) = names.iter().position(|n| *n == name) else {
                return Err(item.error(format!(
                    "unknown axis {name:?}; expected one of {}",
                    names.join(", ")
                )));
            };
            if used[i] {
                return Err(item.error(format!(
                    "axis {name:?} is already zipped; an axis may appear in one zip group"
                )));
            }
            used[i] = true;
            indices.push(i);
        }
        equal_lengths(&group, &indices, axes, written)?;
        groups.push(indices.iter().map(|&i| axes[i].name).collect());
    }
    Ok(groups)
}

fn group_text(names: &[&str]) -> String {
    format!("[{}]", names.join(", "))
}

fn equal_lengths(
    group: &Value,
    indices: &[usize],
    axes: &[Axis],
    written: &[Option<Written>],
) -> Result<()> {
    let first = &axes[indices[0]];
    for &i in &indices[1..] {
        if axes[i].values.len() == first.values.len() {
            continue;
        }
        let names: Vec<&str> = indices.iter().map(|&i| axes[i].name).collect();
        let at = written[i].as_ref().map_or(group, |w| &w.value);
        return Err(at.error(format!(
            "zip group {}: {} has {} values but {} has {}; zipped axes vary together \
             and need equal lengths",
            group_text(&names),
            first.name,
            first.values.len(),
            axes[i].name,
            axes[i].values.len()
        )));
    }
    Ok(())
}

/// Repeated values (or repeated zipped rows) would run the same point twice.
fn distinct_points(
    m: &MethodAxes,
    written: &[Option<Written>],
    table: Option<&Table>,
) -> Result<()> {
    let groups = m.zip_indices();
    let zipped: HashSet<usize> = groups.iter().flatten().copied().collect();
    for (i, axis) in m.axes.iter().enumerate() {
        if zipped.contains(&i) {
            continue;
        }
        let mut seen = HashSet::with_capacity(axis.values.len());
        for (j, value) in axis.values.iter().enumerate() {
            if !seen.insert(value.bits()) {
                let item = &written[i].as_ref().expect("defaults are single").items[j];
                return Err(item.error(format!("value {value} is listed twice")));
            }
        }
    }
    for group in &groups {
        distinct_rows(m, group, table)?;
    }
    Ok(())
}

fn distinct_rows(m: &MethodAxes, group: &[usize], table: Option<&Table>) -> Result<()> {
    let rows = m.axes[group[0]].values.len();
    let mut seen = HashSet::with_capacity(rows);
    for row in 0..rows {
        let key: Vec<u64> = group
            .iter()
            .map(|&i| m.axes[i].values[row].bits())
            .collect();
        if seen.insert(key) {
            continue;
        }
        let names: Vec<&str> = group.iter().map(|&i| m.axes[i].name).collect();
        let zip = table
            .and_then(|t| t.get("zip"))
            .expect("zipped axes come from a table");
        return Err(zip.error(format!(
            "zip group {}: row {} repeats an earlier row; the same point would run twice",
            group_text(&names),
            row + 1
        )));
    }
    Ok(())
}

/// Every key a `[[sweep.exclude]]` may have.
fn exclude_keys() -> Vec<&'static str> {
    let mut keys = vec!["method", "dataset"];
    for method in Method::NAMES {
        keys.extend(axis_specs(method).iter().map(|s| s.name));
    }
    keys
}

fn excludes(value: &Value, datasets: &[String], methods: &[MethodAxes]) -> Result<Vec<Exclude>> {
    let keys = exclude_keys();
    let mut rules = Vec::new();
    for item in value.array()? {
        let t = item.table("[[sweep.exclude]]", &keys)?;
        rules.push(exclude(&t, datasets, methods)?);
    }
    Ok(rules)
}

/// One exclude: it must name a listed method (or a parameter of one), use only that method's
/// parameters, and match at least one point of the grid.
fn exclude(t: &Table, datasets: &[String], methods: &[MethodAxes]) -> Result<Exclude> {
    let params: Vec<_> = t
        .entries()
        .into_iter()
        .filter(|(key, _, _)| *key != "method" && *key != "dataset")
        .collect();
    let method = exclude_method(t, &params)?;
    let Some(axes) = methods.iter().find(|m| m.method == method) else {
        let at = t
            .get("method")
            .map_or_else(|| params[0].1.clone(), |v| v.span());
        return Err(t.error_at(
            &at,
            format!("exclude names method {method:?}, which is not in sweep.method"),
        ));
    };
    let mut values = BTreeMap::new();
    for (key, key_span, value) in &params {
        let (name, param) = exclude_param(t, axes, key, key_span, value)?;
        values.insert(name, param);
    }
    let dataset = t
        .get("dataset")
        .map(|v| exclude_dataset(&v, datasets))
        .transpose()?;
    zip_rows_match(t, axes, &values)?;
    Ok(Exclude {
        method,
        dataset,
        params: values,
        at: t.location(),
    })
}

type Entry<'a> = (&'a str, Range<usize>, Value<'a>);

/// The method written, or the one owning the first parameter.
fn exclude_method(t: &Table, params: &[Entry]) -> Result<&'static str> {
    if let Some(value) = t.get("method") {
        let method = known_method(&value)?;
        if method == "ar" {
            return Err(
                value.error("the AR baseline cannot be excluded: every method is compared with it")
            );
        }
        return Ok(method);
    }
    let Some((key, _, _)) = params.first() else {
        return Err(t.error(
            "an exclude needs a method or a parameter; to drop a whole dataset, \
             remove it from sweep.dataset",
        ));
    };
    let owner = Method::NAMES
        .into_iter()
        .find(|m| axis_specs(m).iter().any(|s| s.name == *key));
    Ok(owner.expect("exclude keys are parameters of some method"))
}

fn exclude_param(
    t: &Table,
    axes: &MethodAxes,
    key: &str,
    key_span: &Range<usize>,
    value: &Value,
) -> Result<(&'static str, Param)> {
    let specs = axis_specs(axes.method);
    let Some(spec) = specs.iter().find(|s| s.name == key) else {
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        return Err(t.error_at(
            key_span,
            format!(
                "parameter {key:?} does not belong to method {:?}; its parameters are {}",
                axes.method,
                names.join(", ")
            ),
        ));
    };
    let param = param(value, spec.kind)?;
    let axis = axes.axis(spec.name).expect("every spec has an axis");
    if !axis.values.contains(&param) {
        let listed: Vec<String> = axis.values.iter().map(Param::to_string).collect();
        return Err(value.error(format!(
            "exclude matches no point: sweep.{}.{} has no value {param} (values: {})",
            axes.method,
            spec.name,
            listed.join(", ")
        )));
    }
    Ok((spec.name, param))
}

fn exclude_dataset(value: &Value, datasets: &[String]) -> Result<String> {
    let name = value.str()?;
    if datasets.iter().any(|d| d == name) {
        Ok(name.to_string())
    } else {
        Err(value.error(format!(
            "exclude matches no point: dataset {name:?} is not in sweep.dataset ({})",
            datasets.join(", ")
        )))
    }
}

/// Zipped axes only take their values together: `depth = 7, max_nodes = 64` matches nothing
/// unless some row pairs them.
fn zip_rows_match(t: &Table, axes: &MethodAxes, values: &BTreeMap<&str, Param>) -> Result<()> {
    for group in axes.zip_indices() {
        let fixed: Vec<(&Axis, Param)> = group
            .iter()
            .filter_map(|&i| values.get(axes.axes[i].name).map(|p| (&axes.axes[i], *p)))
            .collect();
        let rows = axes.axes[group[0]].values.len();
        let found = (0..rows).any(|row| fixed.iter().all(|(axis, p)| axis.values[row] == *p));
        if !found {
            let text: Vec<String> = fixed
                .iter()
                .map(|(a, p)| format!("{} = {p}", a.name))
                .collect();
            let names: Vec<&str> = group.iter().map(|&i| axes.axes[i].name).collect();
            return Err(t.error(format!(
                "exclude matches no point: no row of zip group {} has {}",
                group_text(&names),
                text.join(" and ")
            )));
        }
    }
    Ok(())
}
