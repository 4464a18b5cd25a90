# The inference API: `python -m api` on port 8000, serving the bundle at RETAIL_MODEL_URI;
# batch scoring of the lake's silver lines with the same bundle: `python -m cli.score`;
# and the weekly monitoring of the week's predictions: `python -m cli.monitor`.
# Only the project's core, `serve` and `monitor` (matplotlib, for the monitoring report's
# figures) dependency groups are installed (no MLflow, training or Pulumi packages), so the
# image serves a bundle location (s3:// or a mounted folder); the registry's champion alias
# needs the `ml` group as well.
#
#   docker build -t retail-inference .
#   docker run -p 8000:8000 -e RETAIL_MODEL_URI=s3://bucket/models/price-sensitivity/champion/ \
#     -e RETAIL_API_KEYS_FILE=/var/run/secrets/retail/api-keys -v ./keys:/var/run/secrets/retail:ro retail-inference

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-install-project --no-default-groups --group serve --group monitor

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid "${UID}" retail \
    && useradd --system --uid "${UID}" --gid retail --no-create-home --shell /usr/sbin/nologin retail
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY api ./api
COPY ml ./ml
# Batch scoring and monitoring run in this image too (the weekly CronJobs: `python -m cli.score`,
# `python -m cli.monitor`), which need only these CLI modules; cli.main would import the Pulumi
# side, which is not installed here.
COPY cli/__init__.py cli/console.py cli/score.py cli/monitor.py ./cli/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RETAIL_MODEL_CACHE_DIR=/tmp/retail-models
USER ${UID}:${UID}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2)"]
ENTRYPOINT ["python", "-m", "api"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
