//! Tokens/s of every decoding method on the trained fixture pair (f32, CPU), and optionally AR on
//! a randomly initialised checkpoint of Pythia-410M's shape (`--pythia-410m`).
//!
//! Usage: cargo bench --bench engine -- [--tokens N] [--repeats R] [--warmup W] [--only LABEL] [--pythia-410m]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dynatree::decode::{self, GenerationSettings, Method, Metrics, Schedule, TreeParams};
use dynatree::model::{GptNeox, HubSettings, ModelFiles, ModelSource};

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

/// Runs warm-ups then timed repeats; prints mean ± std tokens/s and returns the mean.
fn measure(
    label: &str,
    method: &Method,
    target: &GptNeox,
    draft: Option<&GptNeox>,
    opts: &Options,
) -> f64 {
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
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let std = (rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>()
        / (rates.len().max(2) - 1) as f64)
        .sqrt();
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
    mean
}

/// What one target pass costs as the block grows: speculation pays only while a block of
/// k + 1 tokens costs well under k + 1 single-token passes.
fn pass_cost_by_block(model: &GptNeox, name: &str) {
    let prompt = prompt(model.config().vocab_size as u32);
    let mut cache = model.new_cache(prompt.len() + 64).expect("cache");
    let chain = dynatree::model::chain_parents;
    model
        .forward(&prompt, &chain(prompt.len()), &mut cache, prompt.len() - 1)
        .expect("prefill");
    cache.commit_all().expect("commit");
    let mut line = format!("{name} pass cost, µs by block size:");
    for rows in [1usize, 2, 3, 5, 9, 17, 33] {
        let block: Vec<u32> = prompt.iter().cycle().take(rows).copied().collect();
        let repeats = 50;
        let start = std::time::Instant::now();
        for _ in 0..repeats {
            model
                .forward(&block, &chain(rows), &mut cache, 0)
                .expect("pass");
            cache.truncate(prompt.len());
        }
        line += &format!(
            "  {rows}: {:.0}",
            start.elapsed().as_secs_f64() * 1e6 / repeats as f64
        );
    }
    println!("{line}");
}

fn tiny_pair(opts: &Options) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-neox");
    let (target, draft) = (load(&fixture.join("target")), load(&fixture.join("draft")));
    pass_cost_by_block(&target, "target");
    pass_cost_by_block(&draft, "draft");
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
        let rate = measure(label, method, &target, draft, opts);
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

fn main() {
    let opts = options();
    tiny_pair(&opts);
    if opts.pythia_410m {
        let dir = pythia_410m_checkpoint();
        println!("\nPythia-410M shape ({}), f32 CPU, AR", dir.display());
        let target = load(&dir);
        measure("ar", &Method::Ar, &target, None, &opts);
    }
}
