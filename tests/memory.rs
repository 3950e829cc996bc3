//! Peak memory on the fixture pair, measured as `run` measures it (the counting allocator, reset
//! before each generation with both models loaded): caches sized by need, so no method pays for
//! a worst-case buffer; AR makes no draft cache. One test, so nothing else allocates meanwhile.

mod common;

use common::models::{pair, reference, settings};
use dynatree::bench::memory::{self, CountingAlloc};
use dynatree::decode::{self, Generation, Method, TreeParams};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

const NEW_TOKENS: usize = 256;
/// Activations, logits and tree bookkeeping of one forward pass of the fixture pair (a
/// 17-node tree's f32 logits over 2,048 ids are 136 KiB), plus one cache growth chunk of
/// the target (64 slots × 4 layers × 2 × 256 × 4 bytes = 512 KiB) that a tree may need beyond AR.
const ACTIVATION_BOUND: usize = 1 << 20;

fn measure(method: &Method, prompt: &[u32]) -> (Generation, usize) {
    let p = pair();
    memory::reset_peak();
    let generation = decode::generate(
        method,
        &p.target,
        Some(&p.draft),
        prompt,
        &settings(NEW_TOKENS),
    )
    .expect("generation runs");
    let peak = memory::peak_heap_bytes().expect("the counting allocator is installed");
    (generation, peak)
}

#[test]
fn speculative_peaks_stay_within_the_draft_cache_of_ars() {
    let prompt = &reference().cases[0].prompt_ids;
    let p = pair();
    let weights = p.target.weight_bytes() + p.draft.weight_bytes();
    let (ar, ar_peak) = measure(&Method::Ar, prompt);
    assert_eq!(ar.cache_bytes.draft, 0, "AR makes no draft cache");
    assert!(
        ar_peak > weights + ar.cache_bytes.target,
        "the peak {ar_peak} holds both models' weights {weights} and AR's cache {}",
        ar.cache_bytes.target
    );
    let methods = [
        Method::Linear { k: 6 },
        Method::FixedTree(TreeParams {
            depth: 6,
            branch: 2,
            tau: 0.0,
            max_nodes: 16,
        }),
        Method::hf_assisted_default(),
    ];
    for method in methods {
        let (generation, peak) = measure(&method, prompt);
        assert_eq!(generation.tokens, ar.tokens, "{method:?} is lossless");
        let kv = generation.cache_bytes;
        assert!(kv.draft > 0, "{method:?} has a draft cache");
        assert!(peak > weights + kv.target + kv.draft, "{method:?}");
        assert!(
            peak <= ar_peak + kv.draft + ACTIVATION_BOUND,
            "{method:?}: peak {peak} exceeds AR's {ar_peak} + its draft cache {} + {ACTIVATION_BOUND}",
            kv.draft
        );
        if !matches!(method, Method::Dynatree(_)) {
            // A chain never reaches past the last token to generate: the same cache as AR's.
            assert_eq!(kv.target, ar.cache_bytes.target, "{method:?}");
        }
    }
}
