//! Method labels for tables and figures, e.g. `AR`, `Linear Spec (K=6)`,
//! `Fixed Tree (D=8, B=3, τ=0.1)`, `DynaTree`. The name is the registry's label or the
//! manifest's (`label = "..."` in `[sweep.METHOD]`, which may be a template such as
//! `"DynaTree (D={depth}, B={branch})"`). A parameter appears when the registry always labels
//! it or when it varies among the labelled configurations of that method, so labels stay short
//! and still tell every row apart; parameters that differ by dataset within one configuration
//! are left to the caption.

use crate::decode::{Method, Param};

/// A configuration to label.
pub struct Labelled<'a> {
    pub method: &'a Method,
    /// The manifest's name (or template) for the method.
    pub name: Option<&'a str>,
    /// Parameters left out because they differ by dataset.
    pub hidden: &'a [&'static str],
}

/// Labels for `methods` (distinct configurations), in the same order.
#[cfg(test)]
pub fn label_all(methods: &[Method]) -> Vec<String> {
    let items: Vec<Labelled> = methods
        .iter()
        .map(|method| Labelled {
            method,
            name: None,
            hidden: &[],
        })
        .collect();
    label_each(&items)
}

/// Labels for distinct configurations; a label two configurations would share gets each
/// one's full parameters appended.
pub fn label_each(items: &[Labelled]) -> Vec<String> {
    let mut labels: Vec<String> = items.iter().map(|item| label(item, items)).collect();
    for i in 0..labels.len() {
        let shared = (0..labels.len()).any(|j| j != i && labels[j] == labels[i]);
        if shared {
            labels[i] = format!("{} [{}]", labels[i], items[i].method.describe());
        }
    }
    labels
}

fn label(item: &Labelled, all: &[Labelled]) -> String {
    let spec = item.method.spec();
    let values = item.method.values();
    let name = item.name.unwrap_or(spec.label);
    if name.contains('{') {
        return fill(name, item.method);
    }
    let parts: Vec<String> = spec
        .params
        .iter()
        .zip(&values)
        .filter(|(p, _)| !item.hidden.contains(&p.name))
        .filter(|(p, _)| p.always_labelled || varies(all, item.method.name(), p.name))
        .filter_map(|(p, v)| Some(part(p.symbol?, v)))
        .collect();
    if parts.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", parts.join(", "))
    }
}

fn part(symbol: &str, value: &Param) -> String {
    match value {
        Param::Switch(on) => format!("{symbol} {}", if *on { "on" } else { "off" }),
        Param::Schedule(_) => shown(value),
        _ => format!("{symbol}={}", shown(value)),
    }
}

fn shown(value: &Param) -> String {
    value.to_string().trim_matches('"').to_string()
}

/// Whether parameter `param` takes more than one value among the configurations of `method`.
fn varies(all: &[Labelled], method: &str, param: &str) -> bool {
    let mut values: Vec<String> = all
        .iter()
        .filter(|i| i.method.name() == method && !i.hidden.contains(&param))
        .filter_map(|i| i.method.value(param).map(|v| v.to_string()))
        .collect();
    values.sort();
    values.dedup();
    values.len() > 1
}

/// `{name}` placeholders replaced by the method's values.
fn fill(template: &str, method: &Method) -> String {
    let mut out = template.to_string();
    for p in method.spec().params {
        if let Some(v) = method.value(p.name) {
            out = out.replace(&format!("{{{}}}", p.name), &shown(&v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TreeParams;

    fn tree_method(depth: usize, tau: f64) -> Method {
        Method::FixedTree(TreeParams {
            depth,
            branch: 2,
            tau,
            max_nodes: 32,
        })
    }

    #[test]
    fn secondary_parameters_appear_only_when_they_vary() {
        let fixed = label_all(&[Method::Ar, Method::Linear { k: 6 }, tree_method(6, 0.03)]);
        assert_eq!(
            fixed,
            ["AR", "Linear Spec (K=6)", "Fixed Tree (D=6, B=2, τ=0.03)"]
        );
        let varied = label_all(&[tree_method(6, 0.03), tree_method(7, 0.03)]);
        assert_eq!(
            varied,
            [
                "Fixed Tree (D=6, B=2, τ=0.03)",
                "Fixed Tree (D=7, B=2, τ=0.03)"
            ]
        );
        assert_eq!(label_all(&[Method::hf_assisted_default()]), ["HF Assisted"]);
        let dynatree = Method::default_of("dynatree").unwrap();
        assert_eq!(label_all(&[dynatree]), ["DynaTree"]);
    }

    #[test]
    fn manifest_names_and_templates() {
        let tree = tree_method(6, 0.05);
        let items = [Labelled {
            method: &tree,
            name: Some("DynaTree (D={depth}, B={branch})"),
            hidden: &[],
        }];
        assert_eq!(label_each(&items), ["DynaTree (D=6, B=2)"]);
        let linear = Method::Linear { k: 8 };
        let items = [Labelled {
            method: &linear,
            name: None,
            hidden: &["k"],
        }];
        assert_eq!(label_each(&items), ["Linear Spec"]);
    }

    #[test]
    fn switches_and_windows_tell_ablation_variants_apart() {
        let Some(Method::Dynatree(p)) = Method::default_of("dynatree") else {
            unreachable!()
        };
        let off = Method::Dynatree(crate::decode::AdaptiveParams { window: 0, ..p });
        let on = Method::Dynatree(p);
        assert_eq!(label_all(&[off, on]), ["DynaTree (W=0)", "DynaTree (W=10)"]);
    }
}
