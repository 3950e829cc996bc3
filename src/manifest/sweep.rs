//! The `[sweep]` section: datasets and methods to run, each method's parameter axes (with
//! optional zipping), and points to exclude.
//!
//! Everything a sweep names must select something: a per-method table for a method that is not
//! listed, an empty axis, or an exclude that matches no point is an error, because each would
//! otherwise silently change what the experiment measures.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Serialize;

use super::reader::{Table, Value};
use super::{Location, ManifestError};
use crate::decode::{method_names, method_spec, Param, ParamKind, ParamSpec, Schedule, METHODS};

type Result<T> = std::result::Result<T, ManifestError>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// Dataset names in the order written; the outer loop of the grid.
    pub dataset: Vec<String>,
    /// Methods in the order written (`ar` included only if written), with their axes.
    pub method: Vec<MethodAxes>,
    pub exclude: Vec<Exclude>,
}

/// One method's parameter axes, all of them, in the registry's order (see `axis_specs`),
/// defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodAxes {
    /// A name in `decode::METHODS`.
    pub method: &'static str,
    pub axes: Vec<Axis>,
    /// Groups of axes that vary together element-wise, as written; each axis in at most one.
    pub zip: Vec<Vec<&'static str>>,
    /// The name tables give the method (`label = "..."`), instead of the registry's.
    pub label: Option<String>,
    /// `[sweep.METHOD.dataset.NAME]`: the axes on one dataset, where they differ from the above
    /// (axes not written there keep the values above).
    pub per_dataset: Vec<(String, MethodAxes)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis {
    pub name: &'static str,
    /// Never empty; distinct unless the axis is zipped (then the zipped rows are distinct).
    pub values: Vec<Param>,
}

/// A method's axis: the registry's parameter.
pub type AxisSpec = ParamSpec;

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

/// A method's axes in grid order (the last varies fastest); empty for `ar` and unknown names.
pub fn axis_specs(method: &str) -> &'static [ParamSpec] {
    method_spec(method).map_or(&[], |m| m.params)
}

impl MethodAxes {
    /// The first row of `group`'s axes (one axis, or a zip group of equal lengths) that repeats
    /// an earlier row, if any: such a sweep would run the same point twice.
    pub fn repeated_row(&self, group: &[usize]) -> Option<usize> {
        let rows = self.axes[group[0]].values.len();
        let mut seen = HashSet::with_capacity(rows);
        (0..rows).find(|&row| {
            let key: Vec<u64> = group
                .iter()
                .map(|&i| self.axes[i].values[row].bits())
                .collect();
            !seen.insert(key)
        })
    }

    /// The axes that apply on `dataset`.
    pub fn on(&self, dataset: &str) -> &MethodAxes {
        self.per_dataset
            .iter()
            .find(|(d, _)| d == dataset)
            .map_or(self, |(_, axes)| axes)
    }

    /// This table and every per-dataset one.
    pub fn variants(&self) -> impl Iterator<Item = &MethodAxes> {
        std::iter::once(self).chain(self.per_dataset.iter().map(|(_, m)| m))
    }

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

/// Methods that take a `[sweep.NAME]` table: those with parameters.
fn per_method() -> impl Iterator<Item = &'static str> {
    METHODS
        .iter()
        .filter(|m| !m.params.is_empty())
        .map(|m| m.name)
}

pub(crate) fn parse(value: &Value, cx: &Context) -> Result<Sweep> {
    let mut keys = vec!["dataset", "method", "exclude"];
    keys.extend(per_method());
    let t = value.plain_table(&keys)?;
    let dataset = datasets(&t, cx)?;
    let methods = methods(&t, cx)?;
    tables_have_methods(&t, &methods)?;
    let method = methods
        .iter()
        .map(|name| method_axes(name, t.get(name), &dataset))
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
        let needs_draft = method_spec(name).is_some_and(|m| m.needs_draft);
        if needs_draft && !cx.has_draft {
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
    method_spec(name).map(|m| m.name).ok_or_else(|| {
        item.error(format!(
            "unknown method {name:?}; expected one of {}",
            method_names()
        ))
    })
}

/// A per-method table for an unlisted method would silently do nothing.
fn tables_have_methods(t: &Table, methods: &[&str]) -> Result<()> {
    for name in per_method() {
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

fn method_axes(
    method: &'static str,
    table: Option<Value>,
    datasets: &[String],
) -> Result<MethodAxes> {
    let specs = axis_specs(method);
    let mut allowed: Vec<&str> = specs.iter().map(|s| s.name).collect();
    allowed.extend(["zip", "label", "dataset"]);
    let table = match &table {
        Some(value) => Some(value.plain_table(&allowed)?),
        None => None,
    };
    let defaults: Vec<Axis> = specs
        .iter()
        .map(|spec| Axis {
            name: spec.name,
            values: vec![spec.default],
        })
        .collect();
    let mut base = axes_table(method, table.as_ref(), &defaults, &[])?;
    base.label = match table.as_ref().and_then(|t| t.get("label")) {
        Some(value) => Some(value.non_empty_str()?.to_string()),
        None => None,
    };
    if let Some(value) = table.as_ref().and_then(|t| t.get("dataset")) {
        base.per_dataset = per_dataset(method, &value, &base, datasets)?;
    }
    Ok(base)
}

/// `[sweep.METHOD.dataset.NAME]` tables: each a listed dataset, with the method's axes only.
fn per_dataset(
    method: &'static str,
    value: &Value,
    base: &MethodAxes,
    datasets: &[String],
) -> Result<Vec<(String, MethodAxes)>> {
    let mut allowed: Vec<&str> = axis_specs(method).iter().map(|s| s.name).collect();
    allowed.push("zip");
    let mut out = Vec::new();
    for (name, span, table) in value.map()?.entries() {
        if !datasets.iter().any(|d| d == name) {
            return Err(value.map()?.error_at(
                &span,
                format!(
                    "[sweep.{method}.dataset.{name}]: {name:?} is not in sweep.dataset ({})",
                    datasets.join(", ")
                ),
            ));
        }
        let t = table.plain_table(&allowed)?;
        out.push((
            name.to_string(),
            axes_table(method, Some(&t), &base.axes, &base.zip)?,
        ));
    }
    Ok(out)
}

/// The axes a table writes, the others from `inherited` (defaults, or the method's table for a
/// per-dataset one), checked for zips and repeats.
fn axes_table(
    method: &'static str,
    table: Option<&Table>,
    inherited: &[Axis],
    inherited_zip: &[Vec<&'static str>],
) -> Result<MethodAxes> {
    let specs = axis_specs(method);
    let mut axes = Vec::with_capacity(specs.len());
    let mut written = Vec::with_capacity(specs.len());
    for (spec, inherit) in specs.iter().zip(inherited) {
        let value = table.and_then(|t| t.get(spec.name));
        let (axis, items) = axis(spec, value, inherit)?;
        axes.push(axis);
        written.push(items);
    }
    let zip = match table.and_then(|t| t.get("zip")) {
        Some(value) => zip_groups(&value, &axes, &written)?,
        None => inherited_zip.to_vec(),
    };
    if let (Some(t), None) = (table, table.and_then(|t| t.get("zip"))) {
        inherited_zip_lengths(t, &axes, &zip)?;
    }
    let method_axes = MethodAxes {
        method,
        axes,
        zip,
        label: None,
        per_dataset: Vec::new(),
    };
    distinct_points(&method_axes, &written, table)?;
    Ok(method_axes)
}

fn axis<'a>(
    spec: &ParamSpec,
    value: Option<Value<'a>>,
    inherited: &Axis,
) -> Result<(Axis, Option<Written<'a>>)> {
    let Some(value) = value else {
        return Ok((inherited.clone(), None));
    };
    let items = value.non_empty_array()?;
    let values = items
        .iter()
        .map(|item| param(item, spec))
        .collect::<Result<Vec<_>>>()?;
    let axis = Axis {
        name: spec.name,
        values,
    };
    Ok((axis, Some(Written { value, items })))
}

/// One value, range-checked as `Method::validate` would.
fn param(value: &Value, spec: &ParamSpec) -> Result<Param> {
    let param = typed(value, spec.kind)?;
    spec.check(&param).map_err(|e| value.error(e))?;
    Ok(param)
}

fn typed(value: &Value, kind: ParamKind) -> Result<Param> {
    match kind {
        ParamKind::Count => Ok(Param::Count(value.count()?)),
        ParamKind::Natural => Ok(Param::Count(value.usize()?)),
        ParamKind::Probability => Ok(Param::Probability(value.probability()?)),
        ParamKind::Switch => Ok(Param::Switch(value.bool()?)),
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

/// A per-dataset table keeps the method's zip groups; what it writes must still fit them.
fn inherited_zip_lengths(t: &Table, axes: &[Axis], zip: &[Vec<&'static str>]) -> Result<()> {
    for group in zip {
        let lens: Vec<usize> = group
            .iter()
            .filter_map(|n| axes.iter().find(|a| a.name == *n))
            .map(|a| a.values.len())
            .collect();
        if lens.windows(2).any(|w| w[0] != w[1]) {
            return Err(t.error(format!(
                "zip group {} is inherited from the method's table and needs equal lengths \
                 here too; write the zipped axes together or a zip of this table's own",
                group_text(group)
            )));
        }
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
        if let Some(j) = m.repeated_row(&[i]) {
            let item = &written[i].as_ref().expect("defaults are single").items[j];
            return Err(item.error(format!("value {} is listed twice", axis.values[j])));
        }
    }
    for group in &groups {
        distinct_rows(m, group, table)?;
    }
    Ok(())
}

fn distinct_rows(m: &MethodAxes, group: &[usize], table: Option<&Table>) -> Result<()> {
    let Some(row) = m.repeated_row(group) else {
        return Ok(());
    };
    let names: Vec<&str> = group.iter().map(|&i| m.axes[i].name).collect();
    let message = format!(
        "zip group {}: row {} repeats an earlier row; the same point would run twice",
        group_text(&names),
        row + 1
    );
    let table = table.expect("zipped axes come from a table");
    Err(match table.get("zip") {
        Some(zip) => zip.error(message),
        None => table.error(message),
    })
}

/// Every key a `[[sweep.exclude]]` may have.
fn exclude_keys() -> Vec<&'static str> {
    let mut keys = vec!["method", "dataset"];
    for spec in METHODS.iter().flat_map(|m| m.params) {
        if !keys.contains(&spec.name) {
            keys.push(spec.name);
        }
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
    let method = exclude_method(t, &params, methods)?;
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

/// The method written, or the listed one owning the first parameter.
fn exclude_method(t: &Table, params: &[Entry], methods: &[MethodAxes]) -> Result<&'static str> {
    if let Some(value) = t.get("method") {
        let method = known_method(&value)?;
        if method_spec(method).is_some_and(|m| !m.needs_draft) {
            return Err(
                value.error("the AR baseline cannot be excluded: every method is compared with it")
            );
        }
        return Ok(method);
    }
    let Some((key, span, _)) = params.first() else {
        return Err(t.error(
            "an exclude needs a method or a parameter; to drop a whole dataset, \
             remove it from sweep.dataset",
        ));
    };
    let owners: Vec<&'static str> = METHODS
        .iter()
        .filter(|m| m.param(key).is_some())
        .map(|m| m.name)
        .collect();
    let listed: Vec<&'static str> = owners
        .iter()
        .copied()
        .filter(|o| methods.iter().any(|m| m.method == *o))
        .collect();
    match listed[..] {
        [one] => Ok(one),
        [] => Ok(owners[0]),
        _ => Err(t.error_at(
            span,
            format!(
                "parameter {key:?} belongs to {}; add method = \"...\" to say which",
                listed.join(" and ")
            ),
        )),
    }
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
    let param = param(value, spec)?;
    let mut values: Vec<Param> = Vec::new();
    for variant in axes.variants() {
        let axis = variant.axis(spec.name).expect("every spec has an axis");
        values.extend(
            axis.values
                .iter()
                .filter(|v| !values.contains(v))
                .copied()
                .collect::<Vec<_>>(),
        );
    }
    if !values.contains(&param) {
        let listed: Vec<String> = values.iter().map(Param::to_string).collect();
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
