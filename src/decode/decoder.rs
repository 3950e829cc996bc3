//! Decoding state shared by every method: the committed sequence, the target's cache and the
//! draft's cache, plus the three operations rounds are made of (draft a chain, draft a tree,
//! verify a tree).

use candle_core::Tensor;

use super::tree::{top_k_log_probs, DraftTree, TreePolicy};
use crate::model::{chain_parents, GptNeox, KvCache, Result};

/// Invariant between rounds: the target's cache holds `seq` except its pending tail (at least
/// the last token); the draft's cache holds a prefix of `seq`.
pub(crate) struct Decoder<'m> {
    target: &'m GptNeox,
    target_cache: KvCache,
    draft: Option<(&'m GptNeox, KvCache)>,
    pub seq: Vec<u32>,
    vocab: usize,
}

impl<'m> Decoder<'m> {
    pub fn new(
        target: &'m GptNeox,
        draft: Option<&'m GptNeox>,
        prompt: &[u32],
        vocab: usize,
        capacity: usize,
    ) -> Result<Self> {
        let draft = match draft {
            Some(model) => Some((model, model.new_cache(capacity)?)),
            None => None,
        };
        Ok(Self {
            target,
            target_cache: target.new_cache(capacity)?,
            draft,
            seq: prompt.to_vec(),
            vocab,
        })
    }

    /// Bytes the target's and the draft's caches hold now.
    pub fn cache_bytes(&self) -> super::CacheBytes {
        super::CacheBytes {
            target: self.target_cache.allocated_bytes(),
            draft: self
                .draft
                .as_ref()
                .map_or(0, |(_, cache)| cache.allocated_bytes()),
        }
    }

    /// Runs the pending tokens plus `tree` through the target in one pass, keeps the accepted
    /// path in both caches and appends it and the target's next token to `seq`.
    /// Returns how many draft tokens were accepted.
    pub fn verify(&mut self, tree: &DraftTree) -> Result<usize> {
        let committed = self.target_cache.committed_len();
        let pending = self.seq.len() - committed;
        let mut tokens = self.seq[committed..].to_vec();
        tokens.extend(&tree.tokens);
        let mut parents = chain_parents(pending);
        parents.extend(
            tree.parents
                .iter()
                .map(|p| p.map_or(pending as i32 - 1, |p| (pending + p) as i32)),
        );
        let logits = self
            .target
            .forward(&tokens, &parents, &mut self.target_cache, pending - 1)?;
        let choices = argmax_rows(&logits, self.vocab)?;
        let (path, next) = tree.accept(|at| choices[at.map_or(0, |n| n + 1)]);
        let kept: Vec<usize> = (0..pending)
            .chain(path.iter().map(|&n| pending + n))
            .collect();
        self.target_cache.commit(&kept)?;
        if let Some((_, cache)) = &mut self.draft {
            let fed: Vec<usize> = path.iter().map_while(|&n| tree.draft_slots[n]).collect();
            cache.commit(&fed)?;
        }
        self.seq.extend(path.iter().map(|&n| tree.tokens[n]));
        self.seq.push(next);
        Ok(path.len())
    }

    /// Greedily drafts up to `k` tokens, stopping early after a token whose draft probability is
    /// below `confidence_threshold` (as transformers' assistant does).
    pub fn draft_chain(&mut self, k: usize, confidence_threshold: f64) -> Result<DraftTree> {
        let mut tree = DraftTree::default();
        if k == 0 {
            return Ok(tree);
        }
        let mut logits = self.draft_catch_up()?;
        let (model, cache) = self
            .draft
            .as_mut()
            .expect("draft_catch_up checked the draft");
        loop {
            let token = argmax_rows(&logits, self.vocab)?[0];
            let node = tree.push(token, tree.len().checked_sub(1));
            let confident = confidence_threshold <= 0.0
                || probability_of(&logits, token, self.vocab)? >= confidence_threshold;
            if tree.len() == k || !confident {
                return Ok(tree);
            }
            let parent =
                tree.parents[node].map_or(-1, |p| tree.draft_slots[p].expect("fed") as i32);
            tree.draft_slots[node] = Some(cache.speculative_len());
            logits = model.forward(&[token], &[parent], cache, 0)?;
        }
    }

    /// Grows a tree breadth first as `policy` says: the root is the draft's top-1 token after
    /// the committed sequence; each level runs the nodes to expand through the draft (one pass,
    /// tree mask) and appends their most probable children in insertion order until the tree
    /// holds `max_nodes`.
    pub fn grow_tree(&mut self, policy: &impl TreePolicy) -> Result<DraftTree> {
        let mut tree = DraftTree::default();
        let logits = self.draft_catch_up()?;
        let (token, log_prob) = top_k_log_probs(&logits.to_vec2::<f32>()?[0], self.vocab, 1)[0];
        let mut frontier = vec![(tree.push(token, None), log_prob)];
        let mut depth = 0;
        while tree.len() < policy.max_nodes() {
            // Every expanded node adds at least one child, so no more than the budget left
            // need a draft pass.
            let expanded: Vec<(usize, f64)> = frontier
                .iter()
                .copied()
                .filter(|&(_, lp)| policy.expands(depth, lp))
                .take(policy.max_nodes() - tree.len())
                .collect();
            if expanded.is_empty() {
                break;
            }
            let nodes: Vec<usize> = expanded.iter().map(|&(n, _)| n).collect();
            let rows: Vec<Vec<f32>> = self.draft_level(&mut tree, &nodes)?.to_vec2()?;
            frontier.clear();
            for (&(node, base), row) in expanded.iter().zip(&rows) {
                // One pass over the row gives both the confidence (the top-1 probability)
                // and every child the policy could ask for.
                let mut best = top_k_log_probs(row, self.vocab, policy.max_breadth());
                let confidence = best[0].1.exp();
                let room = policy.max_nodes() - tree.len();
                best.truncate(policy.breadth(confidence).min(room));
                for (token, lp) in best {
                    frontier.push((tree.push(token, Some(node)), base + lp));
                }
            }
            depth += 1;
        }
        Ok(tree)
    }

    /// Runs one level of tree nodes through the draft; returns their logits.
    fn draft_level(&mut self, tree: &mut DraftTree, nodes: &[usize]) -> Result<Tensor> {
        let (model, cache) = self
            .draft
            .as_mut()
            .expect("draft_catch_up checked the draft");
        let first_slot = cache.speculative_len();
        let mut tokens = Vec::with_capacity(nodes.len());
        let mut parents = Vec::with_capacity(nodes.len());
        for (j, &node) in nodes.iter().enumerate() {
            tokens.push(tree.tokens[node]);
            parents
                .push(tree.parents[node].map_or(-1, |p| tree.draft_slots[p].expect("fed") as i32));
            tree.draft_slots[node] = Some(first_slot + j);
        }
        model.forward(&tokens, &parents, cache, 0)
    }

    /// Feeds the draft every committed token it has not seen; returns its logits after the last.
    fn draft_catch_up(&mut self) -> Result<Tensor> {
        let (model, cache) = self
            .draft
            .as_mut()
            .expect("speculative methods are given a draft model");
        let missing = &self.seq[cache.committed_len()..];
        let parents = chain_parents(missing.len());
        let logits = model.forward(missing, &parents, cache, missing.len() - 1)?;
        cache.commit_all()?;
        Ok(logits)
    }
}

/// Greedy choice per logit row, restricted to the first `vocab` ids.
pub fn argmax_rows(logits: &Tensor, vocab: usize) -> Result<Vec<u32>> {
    let vocab = vocab.min(logits.dim(1)?);
    Ok(logits
        .narrow(1, 0, vocab)?
        .argmax_keepdim(1)?
        .flatten_all()?
        .to_vec1()?)
}

/// Softmax probability of `token` in a single logit row.
fn probability_of(logits: &Tensor, token: u32, vocab: usize) -> Result<f64> {
    let row: Vec<f32> = logits
        .narrow(1, 0, vocab.min(logits.dim(1)?))?
        .flatten_all()?
        .to_vec1()?;
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    Ok((row[token as usize] as f64 - max).exp() / sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn argmax_never_picks_padding_ids() {
        // The best score sits in a padded embedding row past the tokenizer's 3 ids.
        let logits = Tensor::new(
            &[[0.1f32, 0.7, 0.2, 9.0], [0.5, 0.1, 0.3, 9.0]],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(argmax_rows(&logits, 3).unwrap(), vec![1, 0]);
        assert_eq!(argmax_rows(&logits, 4).unwrap(), vec![3, 3]);
    }

    #[test]
    fn probability_is_a_softmax_entry() {
        let logits = Tensor::new(&[[0.0f32, (3.0f32).ln()]], &Device::Cpu).unwrap();
        assert!((probability_of(&logits, 1, 2).unwrap() - 0.75).abs() < 1e-6);
    }
}
