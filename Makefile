# One entry point for a fresh machine: `make demo` (the main job) and `make test`.
# uv at UV_VERSION (pyproject.toml's [tool.uv] required-version says the same; tests/cicd checks they agree): the
# `uv` on PATH when it is that version (CI's setup-uv, a standalone install), else the system Python's uv module,
# installed with pip when missing or another version. Where the system Python is externally managed (PEP 668:
# Debian 12, Ubuntu 23.04 and later) pip refuses, and set-up stops saying how to install uv. `uv sync --frozen`
# installs exactly uv.lock. The environment is not compiled to bytecode at set-up: Python caches what it imports
# as it imports it (5,854 of the environment's about 21,000 files after one test run). Fresh clones back to back,
# that cost pytest about 16 s (435.2 against 419.5 s) and saved the set-up about 31 s (docs/testing.md): one pair
# of runs, within the machine's hour-to-hour noise. The Makefile unexports PYTHONDONTWRITEBYTECODE, so the recipes'
# commands write the cache whatever the caller's environment says (.ci/run, the CI workflows and the Jenkinsfile all
# test with `make test`). checkov's small environment is compiled: each of the tests' checkov runs imports most of it.
# The tests also lint the CI definitions with pinned npm tools (Node.js; Java for the Jenkinsfile).
unexport PYTHONDONTWRITEBYTECODE
UV_VERSION := 0.13.9
UV_ON_PATH := $(shell uv --version 2>/dev/null)
UV := $(if $(and $(filter uv,$(word 1,$(UV_ON_PATH))),$(filter $(UV_VERSION),$(word 2,$(UV_ON_PATH)))),uv,python3 -m uv)

.PHONY: uv setup setup-test install-project install-checkov install-linters demo test lint bench-pipeline

uv:
	@$(UV) --version 2>/dev/null | grep -qxE "uv $(subst .,\.,$(UV_VERSION))( .*)?" || \
		python3 -m pip install --quiet "uv==$(UV_VERSION)" || \
		{ echo "make: uv $(UV_VERSION) is needed and pip could not install it (see above). Install it, e.g." \
			"'pipx install uv==$(UV_VERSION)' or 'curl -LsSf https://astral.sh/uv/$(UV_VERSION)/install.sh | sh'" \
			"(https://docs.astral.sh/uv/getting-started/installation/), then run make again." >&2; exit 1; }

setup: install-project

# The tests' three environments install at once, each its own make job: they are independent, and the project's
# waits longest on downloads (PySpark is published as a source archive of about 300 MB, built at install). make waits
# for every job, names the one that failed and fails; a Ctrl-C stops them all, and a SIGTERM to make alone stops its
# jobs (make signals its direct children: what an install started itself is that install's to stop).
setup-test:
	$(MAKE) --no-print-directory -j3 install-project install-checkov install-linters

install-project: uv
	$(UV) sync --frozen

install-checkov: uv
	$(UV) sync --frozen --compile-bytecode --project tools/checkov

install-linters: uv
	npm ci --prefix tools/lint --no-audit --no-fund --loglevel=error

demo: setup
	$(UV) run retail demo

# Line coverage (SlipCover, [tool.slipcover] in pyproject.toml) is written as JSON by the test run, then printed and
# held to COVERAGE_FLOOR by SlipCover's merge of that one file: its `fail-under` in the test run itself deletes the
# workers' lines before printing them (docs/testing.md). The floor is a point under what the suite measures.
COVERAGE_JSON := .coverage.json
COVERAGE_FLOOR := 95

test: setup-test
	$(UV) run ruff check .
	$(UV) run python -m slipcover --json --out $(COVERAGE_JSON) -m pytest -n auto --dist loadfile
	$(UV) run python -m slipcover --merge $(COVERAGE_JSON) --out $(COVERAGE_JSON) --fail-under $(COVERAGE_FLOOR) || \
		{ echo "make: line coverage is under $(COVERAGE_FLOOR)% (the table above), or SlipCover could not read" \
			"$(COVERAGE_JSON) (its warning above)" >&2; exit 1; }

lint: setup
	$(UV) run ruff check .

bench-pipeline: setup
	$(UV) run python bench/pipeline.py
