# One entry point for a fresh machine: `make demo` (the main job) and `make test`.
# uv is installed with pip at UV_VERSION when missing or another version (pyproject.toml's
# [tool.uv] required-version says the same; tests/cicd checks they agree); `uv sync --frozen`
# installs exactly uv.lock. The environment is not compiled to bytecode at set-up: Python caches what it imports
# as it imports it (about 5,800 of the environment's 21,000 files in a test run), which cost the suite about 16 s
# more than an environment compiled in advance (pytest 435.2 against 419.5 s, fresh clones back to back), while
# compiling it all took the set-up 45-62 s (docs/testing.md). The Makefile unexports PYTHONDONTWRITEBYTECODE so
# that the cache is written whatever the caller's environment says. checkov's small environment is compiled:
# each of the tests' checkov runs imports most of it.
# The tests also lint the CI definitions with pinned npm tools (Node.js; Java for the Jenkinsfile).
unexport PYTHONDONTWRITEBYTECODE
UV_VERSION := 0.13.9
UV := python3 -m uv

.PHONY: setup setup-test demo test lint bench-pipeline

setup:
	@python3 -m uv --version 2>/dev/null | grep -qx "uv $(UV_VERSION)[^0-9]*.*" || \
		python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen

setup-test: setup
	npm ci --prefix tools/lint --no-audit --no-fund --loglevel=error
	$(UV) sync --frozen --compile-bytecode --project tools/checkov

demo: setup
	$(UV) run retail demo

test: setup-test
	$(UV) run ruff check .
	$(UV) run pytest -n auto --dist loadfile --cov --cov-report=term:skip-covered

lint: setup
	$(UV) run ruff check .

bench-pipeline: setup
	$(UV) run python bench/pipeline.py
