#!/usr/bin/env bash
# A CUDA 13.0 toolchain for building `--features cuda` on a machine without a GPU or a CUDA
# install: nvcc, its compiler parts and headers from pinned PyPI wheels, plus link-time stub
# libraries generated from cudarc's bindings. Prints the environment to build with:
#
#   eval "$(scripts/cuda-toolchain.sh)" && cargo build --release --features cuda
#
# Pinned to 13.0.x: PTX from nvcc 13.1+ is rejected by the 580 driver of our GPU machines, and
# cudarc 0.19.10 refuses nvcc 13.5. The stubs only satisfy the linker (cuBLAS alone is 421 MB);
# the built binary loads the real driver and CUDA 13 libraries where it runs. Installs into
# $CUDA_TOOLCHAIN_DIR (default target/cuda-toolchain); a second call reuses it. Diagnostics go to
# stderr, the environment to stdout.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CUDA_TOOLCHAIN_DIR:-$root/target/cuda-toolchain}"
wheels=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)
# soname -> cudarc binding whose extern functions the stub defines
stubs=(
  "libcuda.so.1 driver"
  "libcublas.so.13 cublas"
  "libcublasLt.so.13 cublaslt"
  "libcurand.so.10 curand"
  "libnvrtc.so.13 nvrtc"
)
cuda_home="$dir/py/nvidia/cu13"

say() { echo "cuda-toolchain: $*" >&2; }

install_wheels() {
  local stamp="$dir/py/.pinned"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${wheels[*]}" ]; then
    return
  fi
  local python
  python="$(command -v python3 || true)"
  if [ -z "$python" ] || ! "$python" -m pip --version >/dev/null 2>&1; then
    say "needs python3 with pip (Debian: apt-get install python3-pip) to fetch nvcc from PyPI"
    exit 1
  fi
  say "installing ${wheels[*]} into $dir/py"
  rm -rf "$dir/py"
  local pip=("$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir/py")
  # --target touches no environment, but Debian's pip refuses without the flag (PEP 668).
  PIP_ROOT_USER_ACTION=ignore "${pip[@]}" "${wheels[@]}" >&2 ||
    PIP_ROOT_USER_ACTION=ignore "${pip[@]}" --break-system-packages "${wheels[@]}" >&2
  echo "${wheels[*]}" >"$stamp"
}

# cudarc's sources, from the lockfile's resolution (cargo downloads them when missing).
cudarc_src() {
  local manifest
  manifest="$(cd "$root" && cargo metadata --features cuda --format-version 1 2>/dev/null |
    python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
  dirname "$manifest"
}

make_stubs() {
  local src="$1" out="$dir/stubs"
  local stamp="$out/.from"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$src" ]; then
    return
  fi
  rm -rf "$out" && mkdir -p "$out"
  for entry in "${stubs[@]}"; do
    read -r soname binding <<<"$entry"
    local bindings="$src/src/$binding/sys/mod.rs" c="$out/${soname%%.so*}.c"
    # The extern declarations (`fn name(` inside `extern "C" { }`, indented), not the wrappers.
    grep -oE '^[[:space:]]+fn [A-Za-z_][A-Za-z0-9_]*\(' "$bindings" |
      sed -E 's/^[[:space:]]+fn ([A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u >"$c"
    if [ ! -s "$c" ]; then
      say "no functions found in $bindings"
      exit 1
    fi
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$out/$soname" "$c"
    ln -sf "$soname" "$out/${soname%%.so*}.so"
  done
  # The real runtime comes from its wheel; the linker looks for the unversioned name.
  ln -sf "$cuda_home/lib/libcudart.so.13" "$out/libcudart.so"
  echo "$src" >"$stamp"
  say "stubs for ${#stubs[@]} libraries in $out"
}

mkdir -p "$dir"
install_wheels
make_stubs "$(cudarc_src)"
version="$("$cuda_home/bin/nvcc" --version | grep -oE 'release [0-9.]+' || true)"
say "nvcc ${version#release } at $cuda_home/bin/nvcc"
cat <<EOF
export CUDA_HOME="$cuda_home"
export CUDA_PATH="$cuda_home"
export PATH="$cuda_home/bin:\$PATH"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$dir/stubs:$cuda_home/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
EOF
