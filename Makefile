# dynatree: `make demo` runs the main job on the default, `make test` runs every check CI runs.
CARGO ?= cargo
FIXTURE ?= ../shared/fixtures/tiny-neox

.PHONY: all build release test fmt-check clippy unit demo generate-demo bench bench-grid bench-hf clean

all: build

build:
	$(CARGO) build

test: fmt-check clippy unit

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test

EXPERIMENT ?= experiments/tiny.toml
ARTIFACTS ?= artifacts
DYNATREE = ./target/release/dynatree

release:
	$(CARGO) build --release

# The default experiment end to end: plan, run what is not done yet, check every result.
demo: release
	$(DYNATREE) check $(EXPERIMENT)
	$(DYNATREE) run $(EXPERIMENT) --artifacts $(ARTIFACTS)
	$(DYNATREE) status $(EXPERIMENT) --artifacts $(ARTIFACTS)
	$(DYNATREE) verify --artifacts $(ARTIFACTS)

# One generation per method on the trained fixture pair; each prints AR's tokens.
generate-demo: release
	@for m in ar linear dynatree hf_assisted; do \
	  $(DYNATREE) generate --target $(FIXTURE)/target --draft $(FIXTURE)/draft \
	    --method $$m --prompt "The history of the city" --max-new-tokens 48; \
	done

# Tokens/s of each method on the fixture pair (f32, CPU); BENCH_ARGS="--pythia-410m" adds a
# randomly initialised checkpoint of Pythia-410M's shape.
bench:
	$(CARGO) bench --bench engine -- $(BENCH_ARGS)

# Planning speed: a 100,000-point grid.
bench-grid:
	$(CARGO) bench --bench grid

# The same measurements with Hugging Face transformers (needs PYTHON with torch + transformers).
PYTHON ?= python3
THREADS ?= 2
bench-hf:
	OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(PYTHON) benches/hf_reference.py generate \
	  --model $(FIXTURE)/target --threads $(THREADS) --max-new-tokens 128 --repeats 5 --warmup 2

clean:
	$(CARGO) clean
