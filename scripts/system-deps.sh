#!/usr/bin/env bash
# What `make test` needs beyond Rust: pdflatex with booktabs (the report's appendix is compiled),
# a one-node Slurm with munge (tests/slurm.rs starts its own cluster), gcc and make, python3 with
# pip (scripts/cuda-toolchain.sh fetches nvcc from PyPI for the cuda check), and the rustfmt and
# clippy components. Installs what is missing when it can (root with apt-get, as CI
# runs; rustup for the components); otherwise stops at once with the exact command to run.
set -euo pipefail

# program or file to look for -> Debian package that provides it
checks=(
  "cmd:make make"
  "cmd:gcc gcc"
  "cmd:pdflatex texlive-latex-base"
  "tex:booktabs.sty texlive-latex-recommended"
  "cmd:slurmctld slurmctld"
  "cmd:slurmd slurmd"
  "cmd:sbatch slurm-client"
  "cmd:munged munge"
  "pip:python3 python3-pip"
)

present() {
  local what=$1
  case "$what" in
    cmd:*) PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin" command -v "${what#cmd:}" >/dev/null 2>&1 ;;
    pip:*) command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 ;;
    tex:*) command -v kpsewhich >/dev/null 2>&1 && [ -n "$(kpsewhich "${what#tex:}" 2>/dev/null)" ] ;;
  esac
}

missing=()
for check in "${checks[@]}"; do
  read -r what package <<<"$check"
  present "$what" || missing+=("$package")
done

if ((${#missing[@]})); then
  install="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages the tests need: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $install -qq >/dev/null
  else
    echo "error: the tests need system packages that are missing: ${missing[*]}" >&2
    echo "install them (Debian/Ubuntu) with:" >&2
    echo "  sudo apt-get update && sudo $install" >&2
    exit 1
  fi
fi

for component in rustfmt clippy; do
  subcommand=${component/rustfmt/fmt}
  if ! cargo "$subcommand" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$component"
    else
      echo "error: cargo $subcommand is missing; install the $component component of your Rust toolchain" >&2
      exit 1
    fi
  fi
done
