#!/usr/bin/env python3
"""Hugging Face transformers baseline for dynatree's throughput numbers.

Runs greedy generation with PyTorch + transformers (float32, CPU) so that the
Rust engine's tokens/s can be put side by side with the reference stack.
Not part of the Rust build or CI; needs a Python env with torch, transformers
and safetensors (e.g. `python3 -m venv ENV && ENV/bin/pip install torch
transformers safetensors`).

Subcommands:

  make-checkpoint  Write a randomly initialised GPT-NeoX checkpoint with the
                   exact shape of a real model (only pythia-410m for now), in
                   the transformers layout (config.json + *.safetensors).
                   Random weights give the same per-token cost as the real
                   ones, which is all a throughput benchmark needs.

  generate         Time `model.generate` greedy decoding (plain AR, or
                   transformers' assisted generation with `--assistant`) and
                   print tokens/s, optionally as one JSON object.

Examples:

  python benches/hf_reference.py make-checkpoint --shape pythia-410m \
      --out /work/bench-ckpt/pythia-410m-random
  python benches/hf_reference.py generate \
      --model tests/fixtures/tiny-neox/target --threads 1 \
      --max-new-tokens 64 --repeats 3 --warmup 1 --json
  python benches/hf_reference.py generate \
      --model tests/fixtures/tiny-neox/target \
      --assistant tests/fixtures/tiny-neox/draft --threads 1 \
      --max-new-tokens 64 --repeats 3 --warmup 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Default prompt source: the embedded tiny-neox fixture (benches/ -> repo root -> tests/fixtures).
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "tiny-neox" / "reference.json"

# Exact architecture of EleutherAI/pythia-410m (its hub config.json).
SHAPES = {
    "pythia-410m": dict(
        architectures=["GPTNeoXForCausalLM"],
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        vocab_size=50304,
        max_position_embeddings=2048,
        use_parallel_residual=True,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        use_cache=True,
    ),
}


def _import_torch(threads: int):
    """Import torch and pin its intra-op and inter-op thread counts."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (only allowed once per process)
        pass
    return torch


# --------------------------------------------------------------------------
# make-checkpoint
# --------------------------------------------------------------------------

def cmd_make_checkpoint(args: argparse.Namespace) -> int:
    torch = _import_torch(args.threads)
    from safetensors import safe_open
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    shape = dict(SHAPES[args.shape])
    config = GPTNeoXConfig(**shape)

    torch.manual_seed(args.seed)
    model = GPTNeoXForCausalLM(config).to(torch.float32).eval()
    n_params = sum(p.numel() for p in model.parameters())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    # transformers >= 5 writes RoPE settings only as a nested `rope_parameters`
    # dict; add Pythia's hub keys at top level too, so loaders that read the
    # hub layout (dynatree's Config) parse it. transformers itself still
    # prefers `rope_parameters` when loading, so both views agree.
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(rotary_pct=shape["rotary_pct"], rotary_emb_base=shape["rotary_emb_base"],
               torch_dtype="float32")
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    # Report what was written: files, and tensor names. The output head is
    # `lm_head` in memory; transformers 5.x maps it back to the hub name
    # `embed_out.weight` on save (older re-saves may hold `lm_head.weight`).
    st_files = sorted(out.glob("*.safetensors"))
    names: list[str] = []
    for f in st_files:
        with safe_open(f, framework="pt") as h:
            names.extend(h.keys())
    names.sort()
    print(f"wrote {out} ({n_params / 1e6:.1f}M params, seed {args.seed})")
    for f in sorted(out.iterdir()):
        print(f"  {f.name}  {f.stat().st_size / 2**20:.1f} MiB")
    print(f"sharded: {len(st_files) > 1} ({len(st_files)} safetensors file(s))")
    print(f"{len(names)} tensors; non-layer tensors: "
          f"{[n for n in names if '.layers.' not in n]}")
    print("first layer-0 tensors:",
          [n for n in names if n.startswith("gpt_neox.layers.0.")][:12])
    head = [n for n in names if n in ("lm_head.weight", "embed_out.weight")]
    print(f"output head: {head}")
    return 0


# --------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------

def build_prompt(fixture: Path, prompt_len: int, vocab_size: int) -> list[int]:
    """Case 0's prompt ids from the fixture, truncated or tiled to prompt_len."""
    base = json.loads(fixture.read_text())["cases"][0]["prompt_ids"]
    ids = (base * (prompt_len // len(base) + 1))[:prompt_len]
    if max(ids) >= vocab_size:
        raise SystemExit(f"prompt id {max(ids)} >= vocab_size {vocab_size}")
    return ids


def cmd_generate(args: argparse.Namespace) -> int:
    torch = _import_torch(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()

    def load(path: str):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    model = load(args.model)
    assistant = load(args.assistant) if args.assistant else None

    prompt = build_prompt(Path(args.fixture), args.prompt_len, model.config.vocab_size)
    input_ids = torch.tensor([prompt], dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)

    # Count the target's forward passes (rounds for assisted generation).
    forwards = [0]
    model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))

    gen_kwargs = dict(
        attention_mask=attention_mask,
        do_sample=False,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.max_new_tokens,  # blocks EOS so every run makes T tokens
        use_cache=True,
    )
    if assistant is not None:
        gen_kwargs["assistant_model"] = assistant

    def run_once() -> tuple[float, int, int]:
        if assistant is not None:
            # transformers reads these from the assistant's generation_config,
            # and the "heuristic" schedule writes the adapted num_assistant_tokens
            # back into it after each call: reset so every repeat starts alike.
            gc = assistant.generation_config
            gc.num_assistant_tokens = args.num_assistant_tokens
            gc.num_assistant_tokens_schedule = args.schedule
            gc.assistant_confidence_threshold = args.confidence_threshold
        forwards[0] = 0
        t0 = time.perf_counter()
        out = model.generate(input_ids, **gen_kwargs)
        dt = time.perf_counter() - t0
        new = out.shape[1] - input_ids.shape[1]
        if new != args.max_new_tokens:
            raise SystemExit(f"generated {new} tokens, expected {args.max_new_tokens}")
        return dt, new, forwards[0]

    with torch.inference_mode():
        for _ in range(args.warmup):
            run_once()
        runs = [run_once() for _ in range(args.repeats)]

    tps = [new / dt for dt, new, _ in runs]
    result = {
        "model": os.path.abspath(args.model),
        "assistant": os.path.abspath(args.assistant) if args.assistant else None,
        "mode": "assisted" if assistant is not None else "ar",
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "prompt_len": args.prompt_len,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "tokens_per_s_mean": statistics.fmean(tps),
        "tokens_per_s": tps,
        "seconds": [dt for dt, _, _ in runs],
        "target_forwards": [f for _, _, f in runs],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if assistant is not None:
        result.update(
            num_assistant_tokens=args.num_assistant_tokens,
            num_assistant_tokens_schedule=args.schedule,
            assistant_confidence_threshold=args.confidence_threshold,
        )

    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['mode']} {args.model}"
              + (f" + assistant {args.assistant}" if args.assistant else ""))
        print(f"threads={args.threads} prompt_len={args.prompt_len} "
              f"new_tokens={args.max_new_tokens} torch={torch.__version__} "
              f"transformers={transformers.__version__}")
        for i, (dt, new, f) in enumerate(runs):
            print(f"  repeat {i}: {new / dt:8.2f} tok/s  ({dt:.3f} s, {f} target forwards)")
        print(f"  mean:     {result['tokens_per_s_mean']:8.2f} tok/s")
    return 0


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    mk = sub.add_parser("make-checkpoint", help="write a random-weight checkpoint of a real shape")
    mk.add_argument("--shape", choices=sorted(SHAPES), required=True)
    mk.add_argument("--out", required=True, help="output directory")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--threads", type=int, default=1)
    mk.set_defaults(func=cmd_make_checkpoint)

    g = sub.add_parser("generate", help="time greedy generation")
    g.add_argument("--model", required=True, help="target model directory")
    g.add_argument("--assistant", help="draft model directory: measure assisted generation")
    g.add_argument("--threads", type=int, required=True)
    g.add_argument("--max-new-tokens", type=int, required=True)
    g.add_argument("--prompt-len", type=int, default=48)
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--warmup", type=int, default=1)
    g.add_argument("--fixture", default=str(DEFAULT_FIXTURE),
                   help="reference.json whose case 0 prompt_ids make the prompt")
    g.add_argument("--num-assistant-tokens", type=int, default=5)
    g.add_argument("--schedule", default="heuristic",
                   choices=["heuristic", "heuristic_transient", "constant"])
    g.add_argument("--confidence-threshold", type=float, default=0.0)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=cmd_generate)

    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
