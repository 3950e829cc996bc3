//! Draft token trees: how a tree policy grows them, and how any tree is accepted against the
//! target.

use super::method::TreeParams;

/// Tokens drafted in one round. A chain (linear drafting) is the tree whose node i has parent i-1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DraftTree {
    pub tokens: Vec<u32>,
    /// Parent node of each node; `None` for a child of the last committed token.
    pub parents: Vec<Option<usize>>,
    /// Index of each node in the draft model's speculative cache, when the draft has run it.
    pub draft_slots: Vec<Option<usize>>,
}

impl DraftTree {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn push(&mut self, token: u32, parent: Option<usize>) -> usize {
        self.tokens.push(token);
        self.parents.push(parent);
        self.draft_slots.push(None);
        self.tokens.len() - 1
    }

    /// Levels in the tree: 0 when empty, the length for a chain.
    pub fn depth(&self) -> usize {
        (0..self.len())
            .map(|n| self.depth_of(n) + 1)
            .max()
            .unwrap_or(0)
    }

    pub fn depth_of(&self, mut node: usize) -> usize {
        let mut depth = 0;
        while let Some(p) = self.parents[node] {
            depth += 1;
            node = p;
        }
        depth
    }

    /// Walks from the root taking, at each node, the child whose token is the target's choice.
    /// `choice(None)` is the target's token after the committed sequence, `choice(Some(i))` after
    /// node i. Returns the accepted nodes and the target's token after the last of them.
    pub fn accept(&self, choice: impl Fn(Option<usize>) -> u32) -> (Vec<usize>, u32) {
        let mut path = Vec::new();
        let mut at = None;
        loop {
            let wanted = choice(at);
            let next = (0..self.len()).find(|&c| self.parents[c] == at && self.tokens[c] == wanted);
            match next {
                Some(c) => {
                    path.push(c);
                    at = Some(c);
                }
                None => return (path, wanted),
            }
        }
    }
}

/// The `k` most probable tokens of one logit row with their log-probabilities, best first
/// (ties by lower id). Only the first `vocab` entries are eligible.
pub fn top_k_log_probs(logits: &[f32], vocab: usize, k: usize) -> Vec<(u32, f64)> {
    let row = &logits[..vocab.min(logits.len())];
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = row
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (id, &l) in row.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(_, worst)| l <= worst) {
            continue;
        }
        let at = best.partition_point(|&(_, v)| v >= l);
        best.insert(at, (id as u32, l));
        best.truncate(k);
    }
    best.into_iter()
        .map(|(id, l)| (id, l as f64 - log_sum))
        .collect()
}

/// How a tree grows, level by level from the root (the draft's top-1 token, depth 0): which
/// frontier nodes are expanded and into how many children.
pub trait TreePolicy {
    fn max_nodes(&self) -> usize;
    /// Whether the node at `depth` whose cumulative draft log-probability is `log_prob` gets
    /// children.
    fn expands(&self, depth: usize, log_prob: f64) -> bool;
    /// How many children an expanded node gets, from the draft's top-1 probability after it.
    fn breadth(&self, confidence: f64) -> usize;
    /// The most children `breadth` ever returns.
    fn max_breadth(&self) -> usize;
}

/// Fixed Tree: levels 1..=depth; a node below `tau` stays as a leaf.
impl TreePolicy for TreeParams {
    fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    fn expands(&self, depth: usize, log_prob: f64) -> bool {
        depth < self.depth && log_prob >= self.tau.ln()
    }

    fn breadth(&self, _confidence: f64) -> usize {
        self.branch
    }

    fn max_breadth(&self) -> usize {
        self.branch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let logits = [0.0f32, 2.0, 1.0, 2.0, -1.0];
        let top = top_k_log_probs(&logits, 5, 3);
        let ids: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        let total: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        assert!((top[0].1 - (2.0f64.exp() / total).ln()).abs() < 1e-9);
        // Ids past the tokenizer's vocabulary are never chosen.
        assert_eq!(top_k_log_probs(&logits, 3, 1)[0].0, 1);
    }

    #[test]
    fn accept_follows_target_choices() {
        let mut tree = DraftTree::default();
        let a = tree.push(10, None);
        let b = tree.push(11, None);
        let c = tree.push(20, Some(b));
        let _ = tree.push(21, Some(a));
        let choices = |at: Option<usize>| match at {
            None => 11,
            Some(n) if n == b => 20,
            Some(n) if n == c => 99,
            _ => 0,
        };
        assert_eq!(tree.accept(choices), (vec![b, c], 99));
        assert_eq!(tree.depth_of(c), 1);
        assert_eq!(tree.depth(), 2);
        assert_eq!(DraftTree::default().depth(), 0);
        assert_eq!(DraftTree::default().accept(|_| 7), (vec![], 7));
    }
}
