# One entry point for a fresh machine: `make demo` (the main job) and `make test`.
# uv is installed with pip when missing; `uv sync --frozen` installs exactly uv.lock.
UV := python3 -m uv
PORT ?= 8000

.PHONY: setup demo test lint bench-pipeline

setup:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	npm ci --prefix tools/lint --no-audit --no-fund --loglevel=error

demo: setup
	$(UV) run retail demo

test: setup
	$(UV) run ruff check .
	$(UV) run pytest

lint: setup
	$(UV) run ruff check .

bench-pipeline: setup
	$(UV) run python bench/pipeline.py
