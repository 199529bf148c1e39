# The two commands a fresh machine needs (see README.md):
#   make sandbox   a local control plane + emulated providers + the operator + sample StorageTokens
#   make test      lint, type-check and every test, building the control plane on first use
# Everything installs itself: a virtualenv in .venv, the Go-built control plane
# and kubectl/helm in the user cache directory (reused between runs).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit e2e sandbox tools bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

tools: $(STAMP)
	$(BIN)/python -m storage_token.dev.cluster.binaries
	$(BIN)/python -m storage_token.dev.prometheus

lint: $(STAMP)
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

test: lint tools
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not e2e' $(PYTEST_ARGS)

e2e: tools
	$(BIN)/python -m pytest -q -m e2e $(PYTEST_ARGS)

sandbox: tools
	$(BIN)/storage-token sandbox $(SANDBOX_ARGS)

# Not part of `make test`: minutes of load on a fresh control plane; results in tests/bench/results/.
bench: tools
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python tests/bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
