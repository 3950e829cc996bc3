//! Tokens/s of every decoding method on the trained fixture pair (f32, CPU), and optionally AR on
//! a randomly initialised checkpoint of Pythia-410M's shape (`--pythia-410m`).
//!
//! Usage: cargo bench --bench engine -- [--tokens N] [--repeats R] [--warmup W] [--only LABEL] [--pythia-410m]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dynatree::bench::roofline::{
    fixed_cost_micros, gbs, pct_of, Attention, PairedRepeat, PassCost, Roofline,
};
use dynatree::bench::stats::{self, Estimate};
use dynatree::decode::{self, GenerationSettings, Method, Metrics, Schedule, TreeParams};
use dynatree::model::{
    compute_pool, GptNeox, HubSettings, KvCache, ModelFiles, ModelSource, ReadStream,
};

struct Options {
    tokens: usize,
    repeats: usize,
    warmup: usize,
    pythia_410m: bool,
    /// Only methods whose label contains this.
    only: Option<String>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
            .unwrap_or(default)
    };
    Options {
        tokens: value("--tokens", 128),
        repeats: value("--repeats", 5),
        warmup: value("--warmup", 2),
        pythia_410m: args.iter().any(|a| a == "--pythia-410m"),
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .cloned(),
    }
}

fn load(dir: &Path) -> GptNeox {
    let files = ModelFiles::resolve(
        &ModelSource::Local(dir.to_path_buf()),
        &HubSettings::from_env(),
    )
    .expect("model resolves");
    files.load(DType::F32, &Device::Cpu).expect("model loads")
}

fn prompt(vocab: u32) -> Vec<u32> {
    let reference =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-neox/reference.json");
    let text = std::fs::read_to_string(reference).expect("reference.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("reference.json parses");
    let ids = json["cases"][0]["prompt_ids"]
        .as_array()
        .expect("prompt_ids");
    ids.iter()
        .map(|v| v.as_u64().unwrap() as u32 % vocab)
        .collect()
}

/// Tokens of the reference prompt: the context of the bench's first pass-cost tables.
fn reference_context() -> usize {
    prompt(u32::MAX).len()
}

/// The paper's runs generate 1500 tokens: late in one, every pass of the Pythia-410M shape also
/// reads a KV cache a fifth the size of its weights.
const PAPER_CONTEXT: usize = 1500;

/// One method's timed repeats.
struct Measured {
    /// Mean tokens/s over the repeats, prefill included.
    tokens_per_s: f64,
    /// Median time per output token after the first (the decoding steps alone), ms.
    tpot_ms: Option<f64>,
}

/// Runs warm-ups then timed repeats; prints mean ± std tokens/s.
fn measure(
    label: &str,
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    opts: &Options,
) -> Measured {
    let settings = GenerationSettings {
        max_new_tokens: opts.tokens,
        stop_at_eos: false,
        eos_token_id: None,
        vocab_limit: target.config().vocab_size,
        trace_trees: false,
    };
    let prompt = prompt(target.config().vocab_size as u32);
    let run = || decode::generate(method, target, draft, &prompt, &settings).expect("generation");
    for _ in 0..opts.warmup {
        run();
    }
    let metrics: Vec<Metrics> = (0..opts.repeats).map(|_| Metrics::of(&run())).collect();
    let rates: Vec<f64> = metrics.iter().map(|m| m.tokens_per_s).collect();
    let Estimate { mean, std, .. } = Estimate::of(&rates).expect("at least one repeat");
    let last = metrics.last().expect("at least one repeat");
    let acceptance = last
        .draft_acceptance
        .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0));
    println!(
        "{label:<34} {mean:>9.1} ± {std:>6.1} tok/s  {:>5.2} tok/pass  acceptance {acceptance:>6}  TTFT {:>6.2} ms  draft/verify {:.0}/{:.0} ms",
        last.tokens_per_round,
        last.ttft_ms,
        last.draft_s * 1e3,
        last.verify_s * 1e3
    );
    let tpots: Vec<f64> = metrics.iter().filter_map(|m| m.tpot_ms).collect();
    Measured {
        tokens_per_s: mean,
        tpot_ms: stats::median(&tpots),
    }
}

/// Read bandwidth, GB/s: the best of `passes` passes of every compute thread summing its share
/// of `buffer` as `stream` says (STREAM-like, with the widest loads this CPU has, on the kernels'
/// own threads).
fn read_rate(buffer: &[f32], stream: ReadStream, passes: usize) -> f64 {
    let best = (0..passes)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(dynatree::model::read_sum(buffer, stream));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    std::mem::size_of_val(buffer) as f64 / best / 1e9
}

/// Bytes of the largest CPU cache, from sysfs (0 where it does not say).
fn largest_cache_bytes() -> usize {
    let parse = |text: &str| {
        let text = text.trim();
        let (digits, unit) =
            text.split_at(text.trim_end_matches(|c: char| c.is_alphabetic()).len());
        let n: usize = digits.parse().unwrap_or(0);
        n * match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            _ => 1,
        }
    };
    (0..8)
        .filter_map(|i| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size"))
                .ok()
        })
        .map(|t| parse(&t))
        .max()
        .unwrap_or(0)
}

/// A buffer of `bytes` of ones, backed by transparent huge pages when `huge` (and the kernel
/// grants them): fewer TLB misses, the best case of the machine's read bandwidth.
fn ones(bytes: usize, huge: bool) -> Vec<f32> {
    if huge {
        dynatree::model::vec_on_huge_pages(bytes / 4, 1.0)
    } else {
        vec![1.0; bytes / 4]
    }
}

/// This process's anonymous memory on transparent huge pages, MB (`None` off Linux).
fn huge_page_mb() -> Option<f64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))?;
    let kib: f64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024.0 / 1e6)
}

/// The kernel's transparent huge page mode (`always`, `madvise` or `never`).
fn huge_page_mode() -> String {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .ok()
        .and_then(|modes| {
            let (_, rest) = modes.split_once('[')?;
            Some(rest.split_once(']')?.0.to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Loads the model at `dir`, saying how much of what the load allocated went on huge pages:
/// the weights ask for them, and where the kernel refuses, a pass streams them more slowly.
fn load_reporting_huge_pages(dir: &Path) -> GptNeox {
    let before = huge_page_mb();
    let model = load(dir);
    if let (Some(before), Some(after)) = (before, huge_page_mb()) {
        println!(
            "the load put {:.1} MB on transparent huge pages (of {:.1} MB of weights; THP mode: {})",
            after - before,
            model.streamed_bytes() as f64 / 1e6,
            huge_page_mode()
        );
    }
    model
}

/// The machine's read ceiling, GB/s: the best of plain and prefetching reads with every vector
/// path's loads, on ordinary and huge pages, over a buffer 8x the largest cache (1-2 GiB), so
/// that no pass is served from cache. The kernels' one-row pass prefetches, and on Zen 4 it
/// outran a plain read; on a Xeon, AVX2's loads read faster than AVX-512's: a ceiling of the
/// kernels' own path or of plain reads alone would overstate every percentage.
/// At most 2 GiB: the buffer is kept for the paired reads, and the fewer huge pages it holds,
/// the more are left for the model's weights, as in a run without it. On a Xeon with a 480 MB
/// L3, 2 and 3.75 GiB read alike (31.8 and 32.0 GB/s).
/// Returns the ceiling, the buffer and the stream that reached it, kept for the reads that
/// `pass_cost` pairs with passes.
fn read_ceiling() -> (f64, Vec<f32>, ReadStream) {
    let bytes = (8 * largest_cache_bytes()).clamp(1 << 30, 2 << 30);
    let streams = ReadStream::supported();
    let rates = |buffer: &[f32]| -> Vec<f64> {
        streams
            .iter()
            .map(|&stream| read_rate(buffer, stream, 5))
            .collect()
    };
    // One buffer at a time: the plain one is made again if it wins.
    let plain_buffer = ones(bytes, false);
    let plain = rates(&plain_buffer);
    drop(plain_buffer);
    let huge_buffer = ones(bytes, true);
    let huge = rates(&huge_buffer);
    let each: Vec<String> = streams
        .iter()
        .zip(plain.iter().zip(&huge))
        .map(|(stream, (plain, huge))| format!("{stream} {plain:.1} / {huge:.1}"))
        .collect();
    println!(
        "read ceiling over {} MiB, GB/s with 4 KiB / huge pages: {}",
        bytes >> 20,
        each.join(", ")
    );
    let best = |rates: &[f64]| {
        let at = (0..rates.len())
            .max_by(|&a, &b| rates[a].total_cmp(&rates[b]))
            .expect("a stream");
        (rates[at], streams[at])
    };
    let ((huge, huge_stream), (plain, plain_stream)) = (best(&huge), best(&plain));
    if huge >= plain {
        (huge, huge_buffer, huge_stream)
    } else {
        (plain, ones(bytes, false), plain_stream)
    }
}

/// The read rate for a working set of `bytes` read again and again, as a model's weights are
/// pass after pass: from cache when they fit in it (the best of the streams this CPU runs).
/// It reads on the compute pool's thread, as the passes it is set against run: from another
/// thread each read also paid a hop, which on a read of a few µs
/// cut the rate it printed to 19 from 150 GB/s in one run.
fn read_rate_at(bytes: usize) -> f64 {
    let buffer = ones(bytes, false);
    compute_pool().install(|| {
        let streams = ReadStream::supported();
        read_rate(&buffer, streams[0], 1);
        streams
            .into_iter()
            .map(|stream| read_rate(&buffer, stream, 20))
            .fold(0.0, f64::max)
    })
}

/// Parents of a complete binary tree of `n` nodes laid out breadth first: the shape of a
/// tree verification block.
fn binary_tree_parents(n: usize) -> Vec<i32> {
    (0..n as i32)
        .map(|i| if i == 0 { -1 } else { (i - 1) / 2 })
        .collect()
}

/// A model's cache holding a prompt of some length, which each timed pass extends and then
/// drops.
struct Prefilled {
    prompt: Vec<u32>,
    cache: KvCache,
}

impl Prefilled {
    /// The reference prompt, repeated to `context` tokens, run through `model`.
    fn new(model: &GptNeox, context: usize) -> Self {
        let prompt: Vec<u32> = prompt(model.config().vocab_size as u32)
            .into_iter()
            .cycle()
            .take(context)
            .collect();
        let mut cache = model.new_cache(context + 64).expect("cache");
        let chain = dynatree::model::chain_parents(context);
        model
            .forward(&prompt, &chain, &mut cache, context - 1)
            .expect("prefill");
        cache.commit_all().expect("commit");
        Self { prompt, cache }
    }

    /// Seconds of one pass of a block with these parents.
    fn pass(&mut self, model: &GptNeox, parents: &[i32]) -> f64 {
        let block: Vec<u32> = self
            .prompt
            .iter()
            .cycle()
            .take(parents.len())
            .copied()
            .collect();
        let start = std::time::Instant::now();
        model
            .forward(&block, parents, &mut self.cache, 0)
            .expect("pass");
        let seconds = start.elapsed().as_secs_f64();
        self.cache.truncate(self.prompt.len());
        seconds
    }

    /// What a pass reads and computes in attention over this prompt.
    fn attention(&self, model: &GptNeox) -> Attention {
        let config = model.config();
        Attention {
            layers: config.num_hidden_layers,
            hidden: config.hidden_size,
            context: self.prompt.len(),
        }
    }
}

/// The pass cost of a block with these parents after `prefilled`'s prompt, for a pass that
/// streams `bytes`.
fn pass_cost(
    model: &GptNeox,
    prefilled: &mut Prefilled,
    parents: &[i32],
    bytes: f64,
    ceilings: &Ceilings,
    budget_s: f64,
) -> PassCost {
    let mut pass = |parents: &[i32]| prefilled.pass(model, parents);
    let first = pass(parents) + pass(&[-1]);
    let repeats = ((budget_s / first) as usize).clamp(5, 50);
    // A model that fits in cache is not bound by memory, and reading the ceiling's buffer
    // would evict it before every pass: its passes are set against the ceiling measured first.
    let from_memory = model.streamed_bytes() > 2 * largest_cache_bytes();
    // From memory, each pass follows its own read of the ceiling's buffer, so that both passes
    // start with caches holding none of the weights: a pass right after another found part of
    // them in a large last-level cache (a Xeon's 480 MiB: a 1-row pass after a read took
    // 1.04-1.14x the one right after it, which made the ratios too high and the fixed cost
    // negative).
    let read_now = || {
        if from_memory {
            ceilings.read_now()
        } else {
            ceilings.read_gbs
        }
    };
    let measured: Vec<PairedRepeat> = (0..repeats)
        .map(|_| PairedRepeat {
            read_before_one_row_gbs: read_now(),
            one_row_s: pass(&[-1]),
            read_before_block_gbs: read_now(),
            block_s: pass(parents),
        })
        .collect();
    PassCost::of(&measured, bytes, from_memory).expect("at least 5 repeats")
}

/// What one pass costs as the block grows, after a prompt of `context` tokens, against the
/// machine's roofline: streaming the weights and the KV cache once at the read ceiling, or
/// every row's multiply-adds (one per weight, two per cached token and feature) at the compute
/// ceiling, whichever takes longer. Speculation pays only while a block of k + 1 tokens costs
/// about what one token costs, which needs the second to stay below the first.
fn pass_cost_by_block(
    model: &GptNeox,
    name: &str,
    ceilings: &Ceilings,
    context: usize,
    blocks: &[(String, Vec<i32>)],
) {
    // On the compute pool's thread, as decoding runs its passes: a pass called from outside
    // hops onto that thread and back (two wake-ups), which a generation pays once.
    let mut prefilled = compute_pool().install(|| Prefilled::new(model, context));
    let attention = prefilled.attention(model);
    let weights = model.streamed_bytes() as f64;
    let bytes = weights + attention.cache_bytes();
    let fmas_per_row = weights / 4.0 + attention.fmas_per_row();
    let roofline = Roofline::new(bytes, fmas_per_row, ceilings.read_gbs, ceilings.fma_per_s);
    println!(
        "{name} after {context} tokens: {:.1} MB per pass ({:.1} of weights, {:.1} of KV cache), {:.0} µs at the read ceiling, {:.0} µs of multiply-adds per row at the compute ceiling",
        bytes / 1e6,
        weights / 1e6,
        attention.cache_bytes() / 1e6,
        roofline.floor_micros,
        roofline.compute_micros_per_row
    );
    println!(
        "  {:<10} {:>10} {:>8} {:>8} {:>10} {:>10} {:>8} {:>10}",
        "block", "µs/pass", "x 1-row", "GB/s", "% ceiling", "roofline", "x 1-row", "% roofline"
    );
    let mut one_row: Option<PassCost> = None;
    for (label, parents) in blocks {
        let cost = compute_pool()
            .install(|| pass_cost(model, &mut prefilled, parents, bytes, ceilings, 0.5));
        let us = cost.micros;
        let roofline_us = roofline.micros(parents.len());
        println!(
            "  {label:<10} {us:>10.0} {:>8.2} {:>8.1} {:>9.0}% {roofline_us:>10.0} {:>8.2} {:>9.0}%",
            cost.x_one_row,
            gbs(bytes, us / 1e6),
            cost.pct_ceiling,
            roofline.x_one_row(parents.len()),
            pct_of(roofline_us, us)
        );
        one_row.get_or_insert(cost);
    }
    if let Some(base) = one_row {
        print_fixed_cost(&base, bytes);
    }
}

/// The blocks the bench times: chains of 1 to 33 rows and a 32-node binary tree; `few` keeps
/// 1 and 8 rows and the tree.
fn blocks(few: bool) -> Vec<(String, Vec<i32>)> {
    let sizes: &[usize] = if few {
        &[1, 8]
    } else {
        &[1, 2, 3, 5, 8, 9, 17, 33]
    };
    let mut blocks: Vec<(String, Vec<i32>)> = sizes
        .iter()
        .map(|&n| (format!("chain {n}"), dynatree::model::chain_parents(n)))
        .collect();
    blocks.push(("tree 32".into(), binary_tree_parents(32)));
    blocks
}

/// What a 1-row pass costs beyond streaming its weights and KV cache. Bandwidth drifts, so a
/// model read from memory is set against reads taken in the same repeats as its passes (the
/// ceiling measured first can be slower than a later pass, which made this figure negative). A
/// model that fits in cache streams its weights faster than the memory ceiling: it is set
/// against the rate this machine reads that many bytes at, again and again, from cache.
fn print_fixed_cost(one_row: &PassCost, bytes: f64) {
    match one_row.paired_fixed_micros {
        Some(fixed) => println!(
            "  fixed cost per pass: {fixed:.0} µs (median over repeats of the 1-row pass minus its bytes at the read of the ceiling's buffer right before it)"
        ),
        None => {
            let at_size = read_rate_at(bytes as usize);
            println!(
                "  fixed cost per pass: {:.0} µs (1-row pass minus its bytes at the {at_size:.1} GB/s this machine reads {:.1} MB at, from cache)",
                fixed_cost_micros(one_row.micros, bytes, at_size),
                bytes / 1e6
            );
        }
    }
}

fn tiny_pair(opts: &Options, ceilings: &Ceilings) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-neox");
    let (target, draft) = (load(&fixture.join("target")), load(&fixture.join("draft")));
    let context = reference_context();
    pass_cost_by_block(&target, "tiny target", ceilings, context, &blocks(false));
    pass_cost_by_block(&draft, "tiny draft", ceilings, context, &blocks(false));
    println!(
        "tiny pair (target 4x256, draft 2x128), f32 CPU, {} new tokens, {} repeats",
        opts.tokens, opts.repeats
    );
    let tree = |depth, branch, tau, max_nodes| {
        Method::FixedTree(TreeParams {
            depth,
            branch,
            tau,
            max_nodes,
        })
    };
    let methods = [
        ("ar", Method::Ar),
        ("linear k=4", Method::Linear { k: 4 }),
        ("linear k=6", Method::Linear { k: 6 }),
        ("linear k=7", Method::Linear { k: 7 }),
        ("fixed_tree D=6 B=2 tau=0.05 N=32", tree(6, 2, 0.05, 32)),
        ("fixed_tree D=7 B=2 tau=0.05 N=32", tree(7, 2, 0.05, 32)),
        ("fixed_tree D=8 B=3 tau=0.1 N=256", tree(8, 3, 0.1, 256)),
        (
            "dynatree (defaults)",
            Method::default_of("dynatree").expect("registered"),
        ),
        (
            "hf_assisted n=5 heuristic",
            Method::HfAssisted {
                num_assistant_tokens: 5,
                schedule: Schedule::Heuristic,
                confidence_threshold: 0.0,
            },
        ),
    ];
    let mut ar = None;
    for (label, method) in &methods {
        if opts
            .only
            .as_ref()
            .is_some_and(|o| !label.contains(o.as_str()) && *label != "ar")
        {
            continue;
        }
        let draft = method.needs_draft().then_some(&draft);
        let rate = measure(label, method, &target, draft, opts).tokens_per_s;
        match ar {
            None => ar = Some(rate),
            Some(base) => println!("{:<34} speedup over AR {:.2}x", "", rate / base),
        }
    }
}

/// Pythia-410M's shape with deterministic pseudo-random weights, written once as safetensors.
fn pythia_410m_checkpoint() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-ckpt/pythia-410m-shape");
    if dir.join("model.safetensors").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let (h, layers, inter, vocab) = (1024usize, 24usize, 4096usize, 50304usize);
    let config = serde_json::json!({
        "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": h,
        "num_attention_heads": 16, "num_hidden_layers": layers, "intermediate_size": inter,
        "rotary_pct": 0.25, "rotary_emb_base": 10000, "layer_norm_eps": 1e-5,
        "use_parallel_residual": true, "vocab_size": vocab, "max_position_embeddings": 2048,
        "hidden_act": "gelu", "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": false
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut tensor = |shape: &[usize], scale: f32, offset: f32| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                offset + scale * ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    };
    let mut tensors = std::collections::HashMap::new();
    tensors.insert(
        "gpt_neox.embed_in.weight".to_string(),
        tensor(&[vocab, h], 0.04, 0.0),
    );
    tensors.insert(
        "embed_out.weight".to_string(),
        tensor(&[vocab, h], 0.04, 0.0),
    );
    for (name, offset) in [("weight", 1.0), ("bias", 0.0)] {
        tensors.insert(
            format!("gpt_neox.final_layer_norm.{name}"),
            tensor(&[h], 0.02, offset),
        );
    }
    for l in 0..layers {
        let p = format!("gpt_neox.layers.{l}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.insert(format!("{p}.{norm}.weight"), tensor(&[h], 0.02, 1.0));
            tensors.insert(format!("{p}.{norm}.bias"), tensor(&[h], 0.02, 0.0));
        }
        for (name, out, inp) in [
            ("attention.query_key_value", 3 * h, h),
            ("attention.dense", h, h),
            ("mlp.dense_h_to_4h", inter, h),
            ("mlp.dense_4h_to_h", h, inter),
        ] {
            tensors.insert(format!("{p}.{name}.weight"), tensor(&[out, inp], 0.04, 0.0));
            tensors.insert(format!("{p}.{name}.bias"), tensor(&[out], 0.02, 0.0));
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

/// What bounds a pass on this machine: memory read bandwidth and multiply-add throughput.
struct Ceilings {
    read_gbs: f64,
    /// f32 multiply-adds per second, all compute threads together.
    fma_per_s: f64,
    /// The buffer and the stream the read ceiling was measured with, for reads paired with
    /// passes.
    buffer: Vec<f32>,
    stream: ReadStream,
}

impl Ceilings {
    /// GB/s of one read of the ceiling's buffer, now.
    fn read_now(&self) -> f64 {
        read_rate(&self.buffer, self.stream, 1)
    }
}

/// The compute ceiling: the best of 3 runs of independent multiply-add chains from registers
/// on every compute thread, each about 0.2 s (sized by timing a probe, whatever the path).
fn compute_ceiling() -> f64 {
    let probe = 1 << 20;
    let start = std::time::Instant::now();
    dynatree::model::fma_rate(probe);
    let iterations = (probe as f64 * 0.2 / start.elapsed().as_secs_f64()) as usize;
    (0..3)
        .map(|_| dynatree::model::fma_rate(iterations.max(probe)))
        .fold(0.0, f64::max)
}

fn main() {
    let opts = options();
    let (read_gbs, buffer, stream) = read_ceiling();
    let ceilings = Ceilings {
        read_gbs,
        fma_per_s: compute_ceiling(),
        buffer,
        stream,
    };
    println!(
        "read ceiling {:.1} GB/s ({} reads), compute ceiling {:.1} G f32 multiply-adds/s ({} threads), kernels {:?}",
        ceilings.read_gbs,
        ceilings.stream,
        ceilings.fma_per_s / 1e9,
        dynatree::model::compute_threads(),
        dynatree::model::Isa::detected()
    );
    tiny_pair(&opts, &ceilings);
    if opts.pythia_410m {
        let dir = pythia_410m_checkpoint();
        println!("\nPythia-410M shape ({}), f32 CPU", dir.display());
        let target = load_reporting_huge_pages(&dir);
        let name = "pythia-410m shape";
        pass_cost_by_block(
            &target,
            name,
            &ceilings,
            reference_context(),
            &blocks(false),
        );
        pass_cost_by_block(&target, name, &ceilings, PAPER_CONTEXT, &blocks(true));
        let ar = measure("ar", &Method::Ar, &target, None, &opts);
        let bytes = target.streamed_bytes() as f64;
        let read_after = read_rate(&ceilings.buffer, ceilings.stream, 3);
        let print_rate = |gbs: f64, what: &str| {
            println!(
                "{:<34} {gbs:.1} GB/s of weights ({what}), {:.0}% of the read ceiling, {:.0}% of the {read_after:.1} GB/s read right after",
                "",
                pct_of(gbs, ceilings.read_gbs),
                pct_of(gbs, read_after)
            )
        };
        print_rate(
            ar.tokens_per_s * bytes / 1e9,
            "tok/s x bytes per pass, prefill included",
        );
        if let Some(tpot_ms) = ar.tpot_ms {
            print_rate(
                bytes / tpot_ms / 1e6,
                "bytes per pass / median TPOT: decoding steps only",
            );
        }
    }
}
