//! Method labels for tables and figures, e.g. `AR (baseline)`, `Linear K=6`,
//! `DynaTree (D=6, B=2)`. A secondary parameter (τ and N of DynaTree, any HF-assisted setting)
//! appears only when it varies among the labelled configurations of that method, so labels stay
//! short and still tell every row apart.

use crate::decode::Method;

/// Labels for `methods` (distinct configurations), in the same order.
pub fn label_all(methods: &[Method]) -> Vec<String> {
    let varies = |f: &dyn Fn(&Method) -> Option<String>| {
        let mut values: Vec<String> = methods.iter().filter_map(f).collect();
        values.sort();
        values.dedup();
        values.len() > 1
    };
    let tree_tau = varies(&|m| tree(m).map(|p| p.tau.to_string()));
    let tree_nodes = varies(&|m| tree(m).map(|p| p.max_nodes.to_string()));
    let hf = |f: fn(&Method) -> Option<String>| varies(&f);
    let hf_tokens = hf(|m| hf_setting(m, 0));
    let hf_schedule = hf(|m| hf_setting(m, 1));
    let hf_threshold = hf(|m| hf_setting(m, 2));
    methods
        .iter()
        .map(|method| match method {
            Method::Ar => "AR (baseline)".to_string(),
            Method::Linear { k } => format!("Linear K={k}"),
            Method::Dynatree(p) => {
                let mut parts = vec![format!("D={}", p.depth), format!("B={}", p.branch)];
                if tree_tau {
                    parts.push(format!("τ={}", p.tau));
                }
                if tree_nodes {
                    parts.push(format!("N={}", p.max_nodes));
                }
                format!("DynaTree ({})", parts.join(", "))
            }
            Method::HfAssisted { .. } => {
                let parts: Vec<String> =
                    [(hf_tokens, "n="), (hf_schedule, ""), (hf_threshold, "c=")]
                        .iter()
                        .enumerate()
                        .filter(|(_, (shown, _))| *shown)
                        .filter_map(|(i, (_, prefix))| {
                            hf_setting(method, i).map(|v| format!("{prefix}{v}"))
                        })
                        .collect();
                if parts.is_empty() {
                    "HF Assisted".to_string()
                } else {
                    format!("HF Assisted ({})", parts.join(", "))
                }
            }
        })
        .collect()
}

fn tree(method: &Method) -> Option<&crate::decode::TreeParams> {
    match method {
        Method::Dynatree(p) => Some(p),
        _ => None,
    }
}

/// HF assisted's settings by position: number of draft tokens, schedule, confidence threshold.
fn hf_setting(method: &Method, which: usize) -> Option<String> {
    let params = method.params();
    let key = ["num_assistant_tokens", "schedule", "confidence_threshold"][which];
    match (method, &params[key]) {
        (Method::HfAssisted { .. }, serde_json::Value::String(s)) => Some(s.clone()),
        (Method::HfAssisted { .. }, v) => Some(v.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TreeParams;

    fn tree_method(depth: usize, tau: f64) -> Method {
        Method::Dynatree(TreeParams {
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
            ["AR (baseline)", "Linear K=6", "DynaTree (D=6, B=2)"]
        );
        let varied = label_all(&[tree_method(6, 0.03), tree_method(6, 0.05)]);
        assert_eq!(
            varied,
            ["DynaTree (D=6, B=2, τ=0.03)", "DynaTree (D=6, B=2, τ=0.05)"]
        );
        assert_eq!(label_all(&[Method::hf_assisted_default()]), ["HF Assisted"]);
    }
}
