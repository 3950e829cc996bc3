//! Expands a manifest's sweep into the ordered list of runs.
//!
//! The order is stable, because result files and tables follow it:
//! - datasets in `sweep.dataset` order (the outer loop);
//! - in each dataset, its prompt caps in `prompts.max_chars` order, and within each cap the
//!   generation lengths in `generation.max_new_tokens` order;
//! - in each dataset, cap and length, AR first (always, exactly once: every speculative method is compared with
//!   it, so it is added when not listed), then the methods in `sweep.method` order;
//! - within a method, its axes (on that dataset: `[sweep.METHOD.dataset.NAME]` replaces some)
//!   in the registry's order (`decode::METHODS`; e.g. fixed_tree: depth, branch, tau,
//!   max_nodes), the last varying fastest, values in the order written. A zip group
//!   takes the place of its first axis in that order and steps its axes together.
//!
//! Points matching an `[[sweep.exclude]]` are dropped. Expansion is linear in the number of
//! points: excludes are looked up by hash, not compared one by one.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::decode::{method_spec, Method, Param, METHODS};
use crate::manifest::{axis_specs, Exclude, Location, Manifest, ManifestError, MethodAxes};

/// The most axes any method has.
const MAX_AXES: usize = max_params();

const fn max_params() -> usize {
    let (mut i, mut most) = (0, 0);
    while i < METHODS.len() {
        if METHODS[i].params.len() > most {
            most = METHODS[i].params.len();
        }
        i += 1;
    }
    most
}

/// One run: a method with all its parameters, on one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridPoint {
    pub dataset: String,
    /// One of the dataset's `prompts.max_chars`.
    pub max_chars: usize,
    /// One of `generation.max_new_tokens`.
    pub max_new_tokens: usize,
    pub method: Method,
}

/// All runs of a manifest, in the order documented above.
///
/// A manifest from `manifest::parse` always expands; the errors are for manifests built or
/// edited in code (a malformed axis, an out-of-range value, an exclude matching nothing).
pub fn expand(manifest: &Manifest) -> Result<Vec<GridPoint>, ManifestError> {
    let grid = Grid::new(manifest)?;
    let mut points = Vec::with_capacity(grid.len());
    grid.try_each(|point| {
        points.push(point);
        Ok::<(), ManifestError>(())
    })?;
    Ok(points)
}

/// A manifest's checked grid, walked point by point without holding the points, so that
/// planning a grid of any size takes memory for one point at a time.
///
/// Points are distinct by construction (datasets, caps, lengths, methods and every axis's values
/// or zipped rows are), so no set of seen points is kept.
pub struct Grid<'m> {
    manifest: &'m Manifest,
    /// Per dataset of `sweep.dataset`: its speculative methods' plans and exclude filters.
    plans: Vec<Vec<(Plan<'m>, Filter)>>,
    len: usize,
}

impl<'m> Grid<'m> {
    /// Checks the sweep and counts its points: every method builds, every exclude matches.
    pub fn new(manifest: &'m Manifest) -> Result<Self, ManifestError> {
        let sweep = &manifest.sweep;
        let file = manifest.path.as_path();
        let distinct = |what: &str, values: &[usize]| {
            let unique: HashSet<&usize> = values.iter().collect();
            match unique.len() == values.len() {
                true => Ok(()),
                false => Err(invalid(file, format!("{what}: a value is listed twice"))),
            }
        };
        distinct(
            "generation.max_new_tokens",
            &manifest.generation.max_new_tokens,
        )?;
        let mut plans = Vec::with_capacity(sweep.dataset.len());
        for dataset in &sweep.dataset {
            distinct("prompts.max_chars", manifest.prompts.max_chars_on(dataset))?;
            let mut on_dataset = Vec::new();
            for m in sweep.method.iter().filter(|m| !m.axes.is_empty()) {
                let axes = m.on(dataset);
                on_dataset.push((
                    Plan::new(axes, file)?,
                    Filter::new(&sweep.exclude, axes, dataset),
                ));
            }
            plans.push(on_dataset);
        }
        let mut grid = Self {
            manifest,
            plans,
            len: 0,
        };
        let mut matched = vec![false; sweep.exclude.len()];
        let mut len = 0;
        grid.walk(&mut matched, &mut |_, _| {
            len += 1;
            Ok::<(), ManifestError>(())
        })?;
        grid.len = len;
        if let Some(i) = matched.iter().position(|m| !m) {
            return Err(ManifestError::Invalid {
                at: sweep.exclude[i].at.clone(),
                message: "exclude matches no point of the grid".to_string(),
            });
        }
        Ok(grid)
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with every point in grid order; stops at its first error.
    pub fn try_each<E: From<ManifestError>>(
        &self,
        mut f: impl FnMut(GridPoint) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut matched = vec![false; self.manifest.sweep.exclude.len()];
        self.walk(&mut matched, &mut |block, method| {
            f(GridPoint {
                dataset: block.dataset.to_string(),
                max_chars: block.max_chars,
                max_new_tokens: block.length,
                method,
            })
        })
    }

    fn walk<E: From<ManifestError>>(
        &self,
        matched: &mut [bool],
        sink: &mut impl FnMut(&Block, Method) -> Result<(), E>,
    ) -> Result<(), E> {
        let manifest = self.manifest;
        let file = manifest.path.as_path();
        for (dataset, plans) in manifest.sweep.dataset.iter().zip(&self.plans) {
            for &max_chars in manifest.prompts.max_chars_on(dataset) {
                for &length in &manifest.generation.max_new_tokens {
                    let block = Block {
                        dataset,
                        max_chars,
                        length,
                    };
                    sink(&block, Method::Ar)?;
                    for (plan, filter) in plans {
                        plan.walk(&block, filter, matched, file, sink)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A dataset, a prompt cap and a generation length: the unit the methods repeat over.
struct Block<'a> {
    dataset: &'a str,
    max_chars: usize,
    length: usize,
}

fn invalid(file: &Path, message: String) -> ManifestError {
    ManifestError::Invalid {
        at: Location {
            file: file.to_path_buf(),
            line_col: None,
        },
        message,
    }
}

/// One method's axes, grouped into the units that step together.
struct Plan<'m> {
    axes: &'m MethodAxes,
    /// Axis indices per step unit, in grid order: a single axis or a zip group.
    groups: Vec<Vec<usize>>,
    /// Values per group.
    lens: Vec<usize>,
}

impl<'m> Plan<'m> {
    fn new(axes: &'m MethodAxes, file: &Path) -> Result<Self, ManifestError> {
        check_shape(axes, file)?;
        let zips = zip_groups(axes, file)?;
        let mut groups = Vec::with_capacity(axes.axes.len());
        for i in 0..axes.axes.len() {
            match zips.iter().find(|g| g.contains(&i)) {
                // A zip group stands where its first axis would.
                Some(group) if group.iter().min() == Some(&i) => groups.push(group.clone()),
                Some(_) => {}
                None => groups.push(vec![i]),
            }
        }
        let lens = groups
            .iter()
            .map(|g| axes.axes[g[0]].values.len())
            .collect();
        for group in &groups {
            distinct_rows(axes, group, file)?;
        }
        Ok(Self { axes, groups, lens })
    }

    fn len(&self) -> usize {
        self.lens.iter().product()
    }

    /// Gives this method's points for one block to `sink`, last group varying fastest.
    fn walk<E: From<ManifestError>>(
        &self,
        block: &Block,
        filter: &Filter,
        matched: &mut [bool],
        file: &Path,
        sink: &mut impl FnMut(&Block, Method) -> Result<(), E>,
    ) -> Result<(), E> {
        let name = self.axes.method;
        let spec = method_spec(name).expect("check_shape knows the method");
        let mut rows = vec![0usize; self.groups.len()];
        let mut params = [Param::Count(0); MAX_AXES];
        let mut bits = [0u64; MAX_AXES];
        for _ in 0..self.len() {
            for (group, &row) in self.groups.iter().zip(&rows) {
                for &a in group {
                    params[a] = self.axes.axes[a].values[row];
                    bits[a] = params[a].bits();
                }
            }
            if !filter.drops(&bits, matched) {
                let method = spec.build(&params[..self.axes.axes.len()]).map_err(|e| {
                    invalid(file, format!("sweep.{name} on {}: {e}", block.dataset))
                })?;
                sink(block, method)?;
            }
            step(&mut rows, &self.lens);
        }
        Ok(())
    }
}

/// Advances an odometer whose last digit turns fastest.
fn step(rows: &mut [usize], lens: &[usize]) {
    for k in (0..rows.len()).rev() {
        rows[k] += 1;
        if rows[k] < lens[k] {
            return;
        }
        rows[k] = 0;
    }
}

/// The axes must be the method's, in its order, non-empty and of the right kind.
fn check_shape(m: &MethodAxes, file: &Path) -> Result<(), ManifestError> {
    let specs = axis_specs(m.method);
    if specs.is_empty() {
        return Err(invalid(
            file,
            format!("unknown method {:?} in sweep", m.method),
        ));
    }
    let names: Vec<&str> = m.axes.iter().map(|a| a.name).collect();
    let expected: Vec<&str> = specs.iter().map(|s| s.name).collect();
    if names != expected {
        return Err(invalid(
            file,
            format!(
                "sweep.{}: axes must be {}, got {}",
                m.method,
                expected.join(", "),
                names.join(", ")
            ),
        ));
    }
    for (axis, spec) in m.axes.iter().zip(specs) {
        let well_typed = axis.values.iter().all(|v| spec.check(v).is_ok());
        if axis.values.is_empty() || !well_typed {
            return Err(invalid(
                file,
                format!(
                    "sweep.{}.{}: needs at least one value, each {}",
                    m.method,
                    axis.name,
                    spec.expected()
                ),
            ));
        }
    }
    Ok(())
}

/// A group's rows (one value, or one zipped row) must differ, or two points would be one run.
fn distinct_rows(m: &MethodAxes, group: &[usize], file: &Path) -> Result<(), ManifestError> {
    let Some(row) = m.repeated_row(group) else {
        return Ok(());
    };
    let names: Vec<&str> = group.iter().map(|&a| m.axes[a].name).collect();
    Err(invalid(
        file,
        format!(
            "sweep.{}.{}: row {} repeats an earlier one; the same point would run twice",
            m.method,
            names.join("+"),
            row + 1
        ),
    ))
}

/// Zip groups as indices: known axes, each zipped once, equal lengths.
fn zip_groups(m: &MethodAxes, file: &Path) -> Result<Vec<Vec<usize>>, ManifestError> {
    let indices = m.zip_indices();
    let mut used = HashSet::new();
    for (group, names) in indices.iter().zip(&m.zip) {
        let len = m.axes[group[0]].values.len();
        let consistent = group.len() == names.len()
            && group.iter().all(|&i| used.insert(i))
            && group.iter().all(|&i| m.axes[i].values.len() == len);
        if !consistent {
            return Err(invalid(
                file,
                format!(
                    "sweep.{}: zip group [{}] must name distinct, unzipped axes of equal length",
                    m.method,
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(indices)
}

/// The excludes that apply to one method on one dataset, indexed for O(1) lookups per point:
/// one hash map per set of constrained axes.
struct Filter {
    signatures: Vec<Signature>,
}

struct Signature {
    /// Constrained axis indices, ascending.
    axes: Vec<usize>,
    /// Constrained values' bits -> the excludes with exactly those values.
    rules: HashMap<Vec<u64>, Vec<usize>>,
}

impl Filter {
    fn new(excludes: &[Exclude], m: &MethodAxes, dataset: &str) -> Self {
        let mut signatures: Vec<Signature> = Vec::new();
        for (i, rule) in excludes.iter().enumerate() {
            let applies =
                rule.method == m.method && rule.dataset.as_deref().is_none_or(|d| d == dataset);
            let Some(constraints) = applies.then(|| constraints(rule, m)).flatten() else {
                continue;
            };
            let (axes, key): (Vec<usize>, Vec<u64>) = constraints.into_iter().unzip();
            let index = match signatures.iter().position(|s| s.axes == axes) {
                Some(index) => index,
                None => {
                    signatures.push(Signature {
                        axes,
                        rules: HashMap::new(),
                    });
                    signatures.len() - 1
                }
            };
            signatures[index].rules.entry(key).or_default().push(i);
        }
        Self { signatures }
    }

    /// Whether any exclude drops the point; marks every exclude that matches it.
    fn drops(&self, bits: &[u64; MAX_AXES], matched: &mut [bool]) -> bool {
        let mut key = [0u64; MAX_AXES];
        let mut dropped = false;
        for signature in &self.signatures {
            let n = signature.axes.len();
            for (slot, &a) in key.iter_mut().zip(&signature.axes) {
                *slot = bits[a];
            }
            if let Some(rules) = signature.rules.get(&key[..n]) {
                dropped = true;
                for &r in rules {
                    matched[r] = true;
                }
            }
        }
        dropped
    }
}

/// (axis index, value bits) per constrained parameter, ascending by axis; `None` when a
/// parameter is not an axis of the method (such a rule can match nothing).
fn constraints(rule: &Exclude, m: &MethodAxes) -> Option<Vec<(usize, u64)>> {
    let mut constraints = rule
        .params
        .iter()
        .map(|(name, value)| {
            let a = m.axes.iter().position(|axis| axis.name == *name)?;
            let spec = axis_specs(m.method).get(a)?;
            spec.check(value).is_ok().then(|| (a, value.bits()))
        })
        .collect::<Option<Vec<_>>>()?;
    constraints.sort_unstable();
    Some(constraints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Schedule;
    use crate::manifest;

    fn manifest_with(sweep: &str) -> Manifest {
        let text = format!(
            r#"
[experiment]
name = "t"
repeats = 1
[models]
target = {{ path = "target" }}
draft = {{ path = "draft" }}
dtype = "f32"
device = "cpu"
[datasets.a]
label = "A"
kind = "text"
path = "a.parquet"
[datasets.b]
label = "B"
kind = "text"
path = "b.parquet"
[prompts]
count = 1
max_chars = 10
[generation]
max_new_tokens = 4
{sweep}"#
        );
        manifest::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn names(points: &[GridPoint]) -> Vec<String> {
        points
            .iter()
            .map(|p| format!("{} {} {}", p.dataset, p.method.name(), p.method.params()))
            .collect()
    }

    #[test]
    fn ar_is_added_first_once_per_dataset() {
        let m = manifest_with(
            "[sweep]\ndataset = [\"b\", \"a\"]\nmethod = [\"linear\", \"ar\"]\n[sweep.linear]\nk = [3, 1]\n",
        );
        assert_eq!(
            names(&expand(&m).unwrap()),
            [
                "b ar {}",
                "b linear {\"k\":3}",
                "b linear {\"k\":1}",
                "a ar {}",
                "a linear {\"k\":3}",
                "a linear {\"k\":1}",
            ]
        );
    }

    #[test]
    fn last_axis_varies_fastest_and_zip_steps_together() {
        let m = manifest_with(
            r#"[sweep]
dataset = ["a", "b"]
method = ["fixed_tree"]
[sweep.fixed_tree]
depth = [2, 3]
branch = [1, 2]
tau = [0.1, 0.2]
max_nodes = [8, 16]
zip = [["max_nodes", "depth"]]
"#,
        );
        let points = expand(&m).unwrap();
        let shape: Vec<(usize, usize, f64, usize)> = points[1..9]
            .iter()
            .map(|p| match p.method {
                Method::FixedTree(t) => (t.depth, t.branch, t.tau, t.max_nodes),
                _ => panic!("not dynatree"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                (2, 1, 0.1, 8),
                (2, 1, 0.2, 8),
                (2, 2, 0.1, 8),
                (2, 2, 0.2, 8),
                (3, 1, 0.1, 16),
                (3, 1, 0.2, 16),
                (3, 2, 0.1, 16),
                (3, 2, 0.2, 16),
            ]
        );
        assert_eq!(points.len(), 18);
    }

    #[test]
    fn excludes_by_dataset_and_method_only() {
        let m = manifest_with(
            r#"[sweep]
dataset = ["a", "b"]
method = ["ar", "linear", "hf_assisted"]
[sweep.linear]
k = [1, 2]
[sweep.hf_assisted]
schedule = ["heuristic", "constant"]
[[sweep.exclude]]
method = "linear"
dataset = "b"
[[sweep.exclude]]
schedule = "constant"
dataset = "a"
"#,
        );
        let points = expand(&m).unwrap();
        assert_eq!(
            names(&points)
                .iter()
                .map(|s| s.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>(),
            [
                "a ar",
                "a linear",
                "a linear",
                "a hf_assisted",
                "b ar",
                "b hf_assisted",
                "b hf_assisted",
            ]
        );
        assert_eq!(
            points[3].method,
            Method::HfAssisted {
                num_assistant_tokens: 5,
                schedule: Schedule::Heuristic,
                confidence_threshold: 0.0
            }
        );
    }

    #[test]
    fn overlapping_excludes_both_count_as_matching() {
        let m = manifest_with(
            r#"[sweep]
dataset = ["a", "b"]
method = ["linear"]
[sweep.linear]
k = [1, 2]
[[sweep.exclude]]
k = 1
[[sweep.exclude]]
method = "linear"
k = 1
dataset = "a"
"#,
        );
        assert_eq!(
            names(&expand(&m).unwrap()),
            [
                "a ar {}",
                "a linear {\"k\":2}",
                "b ar {}",
                "b linear {\"k\":2}"
            ]
        );
    }

    /// Points are distinct by construction, so code that repeats a value is refused up front.
    #[test]
    fn repeated_values_in_code_built_manifests_are_refused() {
        let mut m = manifest_with("[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n");
        m.sweep.method[0].axes[0].values = vec![Param::Count(2), Param::Count(3), Param::Count(2)];
        let err = expand(&m).unwrap_err().to_string();
        assert!(
            err.contains("sweep.linear.k: row 3 repeats an earlier one"),
            "{err}"
        );
        let mut m = manifest_with("[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n");
        m.generation.max_new_tokens = vec![4, 4];
        let err = expand(&m).unwrap_err().to_string();
        assert!(
            err.contains("generation.max_new_tokens: a value is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn the_grid_walks_in_expansion_order_and_stops_at_the_first_error() {
        let m = manifest_with("[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n[sweep.linear]\nk = [1, 2, 3]\n");
        let grid = Grid::new(&m).unwrap();
        let expanded = expand(&m).unwrap();
        assert_eq!(grid.len(), expanded.len());
        let mut walked = Vec::new();
        let stopped = grid.try_each(|p| {
            walked.push(p);
            match walked.len() {
                5 => Err(invalid(Path::new("x"), "enough".into())),
                _ => Ok(()),
            }
        });
        assert_eq!(stopped.unwrap_err().to_string(), "x: enough");
        assert_eq!(walked, expanded[..5]);
    }

    #[test]
    fn code_built_manifests_are_checked() {
        let mut m = manifest_with("[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n");
        m.sweep.method[0].axes[0].values = vec![Param::Count(0)];
        let err = expand(&m).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.toml: sweep.linear.k: needs at least one value, each an integer in 1..=64"
        );

        let mut m = manifest_with(
            "[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n[[sweep.exclude]]\nk = 6\n",
        );
        m.sweep.method[0].axes[0].values = vec![Param::Count(7)];
        let err = expand(&m).unwrap_err().to_string();
        assert_eq!(err, "t.toml:26:1: exclude matches no point of the grid");

        let mut m = manifest_with("[sweep]\ndataset = [\"a\", \"b\"]\nmethod = [\"linear\"]\n");
        m.sweep.method[0].axes[0].values = vec![Param::Probability(0.5)];
        assert!(expand(&m)
            .unwrap_err()
            .to_string()
            .contains("sweep.linear.k"));
    }
}
