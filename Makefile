# dynatree: `make demo` runs the whole chain offline on what ships in the repository,
# `make reproduce` the paper's experiment, `make test` every check CI runs.
CARGO ?= cargo
FIXTURE ?= tests/fixtures/tiny-neox

.PHONY: all build release build-cuda clippy-cuda test system-deps fmt-check clippy unit reproduce reproduce-published demo demo-published demo-hub generate-demo bench bench-grid bench-hf clean

all: build

build:
	$(CARGO) build

test: system-deps fmt-check clippy clippy-cuda unit

# pdflatex, Slurm and munge for the tests: installed when missing if we are root, else the exact
# install command and a stop before any build.
system-deps:
	@scripts/system-deps.sh

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

# The cuda feature needs no GPU to build: scripts/cuda-toolchain.sh installs the pinned CUDA 13.0
# nvcc from PyPI and link stubs under target/cuda-toolchain. The GPU code is checked here on every
# `make test`, so that it cannot rot on machines without a GPU.
CUDA_ENV = eval "$$(scripts/cuda-toolchain.sh)" &&

clippy-cuda:
	$(CUDA_ENV) $(CARGO) clippy --features cuda --all-targets -- -D warnings

build-cuda:
	$(CUDA_ENV) $(CARGO) build --release --features cuda

unit:
	$(CARGO) test

# `make reproduce` runs the paper's experiment; `make demo` the same chain on a laptop-sized one.
EXPERIMENT ?= experiments/paper.toml
DEMO_EXPERIMENT ?= experiments/tiny.toml
HUB_DEMO_EXPERIMENT ?= experiments/cpu.toml
# `make reproduce FETCH_FLAGS=--update-lock` trusts unpinned hub files on first use.
FETCH_FLAGS ?=
ARTIFACTS ?= artifacts
REPORT ?= report
DYNATREE = ./target/release/dynatree
PDFLATEX ?= pdflatex

# `make reproduce` builds with CUDA where nvcc is on PATH (a GPU box) or when CUDA=1, so that
# Pythia-2.8B does not run on the CPU by accident; CUDA=0 builds for the CPU.
CUDA ?= $(if $(shell command -v nvcc 2>/dev/null),1,0)

release:
ifeq ($(CUDA),1)
	$(CUDA_ENV) $(CARGO) build --release --features cuda
else
	$(CARGO) build --release
endif

# fetch (verify every dataset file, keep datasets/lock.toml) -> run what is not done yet ->
# aggregate (CSV) -> report (tables, numbers, figures, appendix) -> appendix.pdf when pdflatex is
# installed. With everything cached, each step finds nothing to do and nothing is rewritten.
reproduce: release
	$(DYNATREE) fetch $(EXPERIMENT) $(FETCH_FLAGS)
	$(DYNATREE) run $(EXPERIMENT) --artifacts $(ARTIFACTS)
	$(DYNATREE) verify --artifacts $(ARTIFACTS)
	$(DYNATREE) aggregate --artifacts $(ARTIFACTS)
	$(DYNATREE) report $(EXPERIMENT) --artifacts $(ARTIFACTS) --out $(REPORT)
	@if command -v $(PDFLATEX) >/dev/null; then $(MAKE) --no-print-directory $(REPORT)/appendix.pdf; \
	else echo "$(PDFLATEX) not found: $(REPORT)/appendix.tex is not compiled"; fi
	@echo
	@$(DYNATREE) summary $(EXPERIMENT) --artifacts $(ARTIFACTS) --report $(REPORT)

$(REPORT)/appendix.pdf: $(REPORT)/appendix.tex $(REPORT)/numbers.tex $(wildcard $(REPORT)/tables/*.tex $(REPORT)/figures/*.png)
	cd $(REPORT) && $(PDFLATEX) -interaction=nonstopmode -halt-on-error appendix.tex >/dev/null
	@echo "wrote $@"

# The published paper's protocol (1500 tokens, Fixed Tree vs adaptive DynaTree).
reproduce-published:
	$(MAKE) --no-print-directory reproduce EXPERIMENT=experiments/published.toml REPORT=$(REPORT)/published

# The same chain offline on the fixture pair and the datasets in datasets/, every method.
demo:
	$(MAKE) --no-print-directory reproduce EXPERIMENT=$(DEMO_EXPERIMENT) REPORT=$(REPORT)/demo

# The published protocol in miniature, offline: every published table and figure.
demo-published:
	$(MAKE) --no-print-directory reproduce EXPERIMENT=experiments/tiny-published.toml REPORT=$(REPORT)/demo-published

# The same chain on Pythia-70M -> Pythia-160M from the hub (needs the network once).
demo-hub:
	$(MAKE) --no-print-directory reproduce EXPERIMENT=$(HUB_DEMO_EXPERIMENT) REPORT=$(REPORT)/demo-hub

# One generation per method on the trained fixture pair; each prints AR's tokens.
generate-demo: release
	@for m in ar linear fixed_tree dynatree hf_assisted; do \
	  $(DYNATREE) generate --target $(FIXTURE)/target --draft $(FIXTURE)/draft \
	    --method $$m --prompt "The history of the city" --max-new-tokens 48; \
	done

# Read ceiling, pass cost by block size and tokens/s of each method on the fixture pair (f32, CPU);
# BENCH_ARGS="--pythia-410m" adds a randomly initialised checkpoint of Pythia-410M's shape.
bench:
	$(CARGO) bench --bench engine -- $(BENCH_ARGS)

# Planning speed: a 100,000-point grid.
bench-grid:
	$(CARGO) bench --bench grid

# The same measurements with Hugging Face transformers (needs PYTHON with torch + transformers):
# pass cost by block size and AR tokens/s of the fixture target, and of HF_410M=DIR too when given
# (a checkpoint from `benches/hf_reference.py make-checkpoint --shape pythia-410m --out DIR`), whose
# pass costs also come after the paper's 1500-token context, as `make bench` prints them.
# CEILING_GBS=X takes that read ceiling (say, the one `make bench` printed) instead of torch's own.
PYTHON ?= python3
THREADS ?= 2
HF_REF = OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(PYTHON) benches/hf_reference.py
HF_CEILING = $(if $(CEILING_GBS),--ceiling-gbs $(CEILING_GBS))
bench-hf:
	set -e; for m in $(FIXTURE)/target $(HF_410M); do \
	  $(HF_REF) passes --model $$m --threads $(THREADS) $(HF_CEILING); \
	  $(HF_REF) generate --model $$m --threads $(THREADS) --max-new-tokens 128 --repeats 5 --warmup 2 \
	    $(HF_CEILING); \
	done
	$(if $(HF_410M),$(HF_REF) passes --model $(HF_410M) --threads $(THREADS) --prompt-len 1500 \
	  $(HF_CEILING))

clean:
	$(CARGO) clean
