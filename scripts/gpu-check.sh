#!/usr/bin/env bash
# The GPU check, prepared here and run on a GPU machine in one call.
#
#   scripts/gpu-check.sh        # here: build the cuda binary (pinned toolchain, no GPU needed),
#                               # strip and compress it into target/gpu-check/; on a machine with
#                               # a GPU it then runs the checks, elsewhere it stops before them
#   scripts/gpu-check.sh run    # on the GPU machine (no Rust, no internet): the checks alone,
#                               # from target/gpu-check/ and the repository's fixtures
#
# Carry target/gpu-check (the device tool carries at most 64 MiB; the size is checked). Each
# check prints one PASS or FAIL line; the exit status is 1 if any failed:
# - device: `dynatree device --device cuda`, the memory probe against a known allocation;
# - parity-f32: greedy tokens on CUDA equal transformers' (tests/fixtures/tiny-neox/reference.json);
# - lossless-f16, lossless-bf16: every speculative method gives AR's tokens in that dtype;
# - sweep: experiments/tiny.toml on `device = "cuda"` end to end (run, verify, aggregate, report),
#   every result measuring GPU memory and Table 7's caption saying so.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/gpu-check"
carry_limit=$((60 << 20))

prepare() {
  eval "$("$root/scripts/cuda-toolchain.sh")"
  # The test profile's optimisation (dependencies at opt-level 3) without a second, release
  # build of every dependency.
  (cd "$root" && cargo build --features cuda --bin dynatree)
  mkdir -p "$out"
  strip -o "$out/dynatree" "$root/target/debug/dynatree"
  xz -9 -T0 -f "$out/dynatree"
  local size
  size=$(stat -c %s "$out/dynatree.xz")
  echo "gpu-check: $out/dynatree.xz is $((size >> 20)) MiB"
  if ((size > carry_limit)); then
    echo "gpu-check: too large to carry (limit $((carry_limit >> 20)) MiB)" >&2
    exit 1
  fi
}

# The CUDA 13 libraries the binary loads: the system's, else a PyTorch venv's wheels.
library_path() {
  local dirs=()
  for lib in /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib \
             /usr/local/lib/python3*/dist-packages/nvidia/*/lib; do
    [ -d "$lib" ] && dirs+=("$lib")
  done
  local IFS=:
  echo "${dirs[*]}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

failures=0
verdict() {
  local name=$1 status=$2 detail=$3
  if [ "$status" = 0 ]; then
    echo "PASS $name: $detail"
  else
    echo "FAIL $name: $detail"
    failures=$((failures + 1))
  fi
}

run_checks() {
  local work bin fixture
  work="$(mktemp -d)"
  bin="$work/dynatree"
  xz -dc "$out/dynatree.xz" >"$bin" && chmod +x "$bin"
  export LD_LIBRARY_PATH
  LD_LIBRARY_PATH="$(library_path)"
  fixture="$root/tests/fixtures/tiny-neox"

  local log="$work/device.log" status=0
  "$bin" device --device cuda >"$log" 2>&1 || status=$?
  verdict device "$status" "$(tr '\n' ' ' <"$log")"

  # Parity and losslessness, checked by Python against the fixture's references.
  status=0
  python3 - "$bin" "$fixture" >"$work/parity.log" 2>&1 <<'EOF' || status=$?
import json, subprocess, sys
binary, fixture = sys.argv[1], sys.argv[2]
ref = json.load(open(f"{fixture}/reference.json"))

def generate(method, dtype, prompt, n):
    out = subprocess.run(
        [binary, "generate", "--device", "cuda", "--dtype", dtype, "--method", method,
         "--target", f"{fixture}/target", "--draft", f"{fixture}/draft",
         "--prompt-ids", ",".join(map(str, prompt)), "--max-new-tokens", str(n), "--json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)["tokens"]

failed = []
for i, case in enumerate(ref["cases"]):
    n = len(case["target_greedy"])
    for method in ["ar", "linear", "fixed_tree", "dynatree", "hf_assisted"]:
        if generate(method, "f32", case["prompt_ids"], n) != case["target_greedy"]:
            failed.append(f"parity-f32 case {i} {method}")
    for dtype in ["f16", "bf16"]:
        ar = generate("ar", dtype, case["prompt_ids"], n)
        for method in ["linear", "fixed_tree", "dynatree", "hf_assisted"]:
            if generate(method, dtype, case["prompt_ids"], n) != ar:
                failed.append(f"lossless-{dtype} case {i} {method}")
print("\n".join(failed) or "all equal")
sys.exit(1 if failed else 0)
EOF
  local cases
  cases=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"]))' "$fixture/reference.json")
  for check in parity-f32 lossless-f16 lossless-bf16; do
    if grep -q "^$check" "$work/parity.log"; then
      verdict "$check" 1 "$(grep "^$check" "$work/parity.log" | tr '\n' ';')"
    elif [ "$status" = 0 ]; then
      verdict "$check" 0 "$cases cases, every method"
    else
      verdict "$check" 1 "$(tail -3 "$work/parity.log" | tr '\n' ' ')"
    fi
  done

  # The fixture sweep on CUDA, end to end.
  local manifest="$root/experiments/.gpu-check.toml" artifacts="$work/artifacts"
  sed 's/^device = "cpu"/device = "cuda"/' "$root/experiments/tiny.toml" >"$manifest"
  status=0
  {
    "$bin" run "$manifest" --artifacts "$artifacts" &&
      "$bin" verify --artifacts "$artifacts" &&
      "$bin" aggregate --artifacts "$artifacts" &&
      "$bin" report "$manifest" --artifacts "$artifacts" --out "$work/report"
  } >"$work/sweep.log" 2>&1 || status=$?
  rm -f "$manifest"
  if [ "$status" = 0 ]; then
    python3 - "$artifacts" "$work/report" >>"$work/sweep.log" 2>&1 <<'EOF' || status=$?
import glob, json, sys
artifacts, report = sys.argv[1], sys.argv[2]
results = [json.load(open(p)) for p in glob.glob(f"{artifacts}/runs/*.json")]
bad = [r["id"][:12] for r in results
       if r["memory"]["kind"] != "gpu_allocated" or r["memory"]["peak_bytes"] is None]
# Table 7's caption (in the appendix) names what its numbers measure.
gpu_table = "Peak memory in MB: the GPU memory allocated" in open(f"{report}/appendix.tex").read()
print(f"{len(results)} results, {len(bad)} without a GPU peak {bad}; Table 7 is GPU memory allocated: {gpu_table}")
sys.exit(1 if bad or not results or not gpu_table else 0)
EOF
  fi
  verdict sweep "$status" "$(tail -1 "$work/sweep.log")"
  echo "gpu-check: logs in $work"
  [ "$failures" = 0 ]
}

case "${1:-prepare}" in
  run) run_checks ;;
  prepare)
    prepare
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      run_checks
    else
      echo "gpu-check: no GPU here; stopping before the device step."
      echo "  On a GPU machine, with target/gpu-check carried: scripts/gpu-check.sh run"
    fi
    ;;
  *)
    echo "usage: scripts/gpu-check.sh [prepare|run]" >&2
    exit 2
    ;;
esac
