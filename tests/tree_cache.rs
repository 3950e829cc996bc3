//! Properties of tree attention and cache compaction on the trained tiny target.

mod common;

use common::{chain, last_logits, max_abs_diff, pair};
use dynatree::model::{GptNeox, KvCache};
use proptest::prelude::*;

const TOLERANCE: f32 = 1e-4;

/// A prompt and a random tree under it: parents[j] is -1 or an earlier node.
fn prompt_and_tree() -> impl Strategy<Value = (Vec<u32>, Vec<u32>, Vec<i32>)> {
    (1usize..24, 1usize..12).prop_flat_map(|(prompt_len, nodes)| {
        let parents: Vec<BoxedStrategy<i32>> = (0..nodes).map(|j| (-1..j as i32).boxed()).collect();
        (
            prop::collection::vec(2u32..2048, prompt_len),
            prop::collection::vec(2u32..2048, nodes),
            parents,
        )
    })
}

/// A cache holding `prompt`, committed.
fn prefilled(model: &GptNeox, prompt: &[u32], extra: usize) -> KvCache {
    let mut cache = model.new_cache(prompt.len() + extra).unwrap();
    model
        .forward(prompt, &chain(prompt.len()), &mut cache, prompt.len() - 1)
        .unwrap();
    cache.commit_all().unwrap();
    cache
}

fn root_path(parents: &[i32], node: usize) -> Vec<usize> {
    let mut path = vec![node];
    while parents[*path.last().unwrap()] >= 0 {
        path.push(parents[*path.last().unwrap()] as usize);
    }
    path.reverse();
    path
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tree_pass_equals_causal_pass_per_path((prompt, tokens, parents) in prompt_and_tree()) {
        let target = &pair().target;
        let mut cache = prefilled(target, &prompt, tokens.len());
        let rows: Vec<Vec<f32>> = target.forward(&tokens, &parents, &mut cache, 0).unwrap().to_vec2().unwrap();
        for (node, row) in rows.iter().enumerate() {
            let mut sequence = prompt.clone();
            sequence.extend(root_path(&parents, node).iter().map(|&n| tokens[n]));
            let diff = max_abs_diff(row, &last_logits(target, &sequence));
            prop_assert!(diff <= TOLERANCE, "node {} differs by {}", node, diff);
        }
    }

    #[test]
    fn compacted_cache_equals_fresh_pass((prompt, tokens, parents) in prompt_and_tree(), pick in any::<prop::sample::Index>()) {
        let target = &pair().target;
        let mut cache = prefilled(target, &prompt, tokens.len());
        target.forward(&tokens, &parents, &mut cache, 0).unwrap();
        let path = root_path(&parents, pick.index(tokens.len()));
        cache.commit(&path).unwrap();

        let mut sequence = prompt.clone();
        sequence.extend(path.iter().map(|&n| tokens[n]));
        let mut fresh = target.new_cache(sequence.len()).unwrap();
        target.forward(&sequence, &chain(sequence.len()), &mut fresh, sequence.len() - 1).unwrap();
        fresh.commit_all().unwrap();

        prop_assert_eq!(cache.len(), fresh.len());
        for layer in 0..target.config().num_hidden_layers {
            let (k, v) = cache.layer(layer).unwrap();
            let (fk, fv) = fresh.layer(layer).unwrap();
            let flat = |t: candle_core::Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            prop_assert!(max_abs_diff(&flat(k), &flat(fk)) <= TOLERANCE, "layer {} keys", layer);
            prop_assert!(max_abs_diff(&flat(v), &flat(fv)) <= TOLERANCE, "layer {} values", layer);
        }
    }

    #[test]
    fn prefill_in_blocks_equals_one_pass(tokens in prop::collection::vec(2u32..2048, 2..40), split in any::<prop::sample::Index>()) {
        let target = &pair().target;
        let cut = 1 + split.index(tokens.len() - 1);
        let mut cache = prefilled(target, &tokens[..cut], tokens.len());
        let rest = &tokens[cut..];
        let row: Vec<f32> = target.forward(rest, &chain(rest.len()), &mut cache, rest.len() - 1).unwrap()
            .flatten_all().unwrap().to_vec1().unwrap();
        prop_assert!(max_abs_diff(&row, &last_logits(target, &tokens)) <= TOLERANCE);
    }
}

/// The candle-ops attention path (used on GPU and in half precision) on the reference tree:
/// the CPU f32 kernels are not involved.
#[test]
fn half_precision_tree_pass_matches_causal_passes() {
    // (dtype, tree vs causal in that dtype, vs transformers in f32): rounding of 16-bit floats.
    for (dtype, same_dtype, vs_f32) in [
        (candle_core::DType::F16, 0.02, 0.05),
        (candle_core::DType::BF16, 0.1, 0.1),
    ] {
        let target = common::load_as("target", dtype);
        let case = &common::reference().cases[1];
        let (tokens, parents) = (&case.tree.tokens, &case.tree.parents);
        let mut cache = prefilled(&target, &case.prompt_ids, tokens.len());
        let rows: Vec<Vec<f32>> = target
            .forward(tokens, parents, &mut cache, 0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for (node, row) in rows.iter().enumerate() {
            let mut sequence = case.prompt_ids.clone();
            sequence.extend(root_path(parents, node).iter().map(|&n| tokens[n]));
            let diff = max_abs_diff(row, &last_logits(&target, &sequence));
            assert!(
                diff <= same_dtype,
                "{dtype:?} node {node}: tree vs causal differ by {diff}"
            );
            let diff = max_abs_diff(row, &case.tree.target_logits_per_node[node]);
            assert!(
                diff <= vs_f32,
                "{dtype:?} node {node}: differs from transformers' f32 by {diff}"
            );
        }
    }
}
