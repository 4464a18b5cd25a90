# One entry point for a fresh machine: `make demo` (the main job) and `make test`.
# uv is installed with pip at UV_VERSION when missing or another version (pyproject.toml's
# [tool.uv] required-version says the same; tests/cicd checks they agree); `uv sync --frozen`
# installs exactly uv.lock, compiled to bytecode once (--compile-bytecode): the tests start hundreds of Python
# processes, and without .pyc files each one compiles what it imports again. Python also writes the cache of this
# repository's own modules as it imports them, whatever the caller's PYTHONDONTWRITEBYTECODE. Leaving the
# environment to be cached as imported instead cost a fresh clone's first test run 75 s more than its second
# (383.6 s against 308.8 s of pytest): at the start many processes compile the same large modules at once.
# The tests also lint the CI definitions with pinned npm tools (Node.js; Java for the Jenkinsfile).
unexport PYTHONDONTWRITEBYTECODE
UV_VERSION := 0.13.9
UV := python3 -m uv

.PHONY: setup setup-test demo test lint bench-pipeline

setup:
	@python3 -m uv --version 2>/dev/null | grep -qx "uv $(UV_VERSION)[^0-9]*.*" || \
		python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode

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
