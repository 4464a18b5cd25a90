# One entry point for a fresh machine: `make demo` (the main job) and `make test`.
# uv is installed with pip at UV_VERSION when missing or another version (pyproject.toml's
# [tool.uv] required-version says the same; tests/cicd checks they agree); `uv sync --frozen`
# installs exactly uv.lock. Python writes its bytecode cache as it imports, for every command run from here,
# whatever the caller's PYTHONDONTWRITEBYTECODE: the tests start hundreds of Python processes, and without .pyc
# files each one compiles what it imports again. Cached as imported, a fresh checkout compiles the 28% of the
# environment's files the tests use, not all 20,500 (`uv sync --compile-bytecode` took 25 s of set-up for that).
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
	$(UV) sync --frozen --project tools/checkov

demo: setup
	$(UV) run retail demo

test: setup-test
	$(UV) run ruff check .
	$(UV) run pytest -n auto --dist loadfile --cov --cov-report=term:skip-covered

lint: setup
	$(UV) run ruff check .

bench-pipeline: setup
	$(UV) run python bench/pipeline.py
