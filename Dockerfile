# syntax=docker/dockerfile:1
# cpm-exporter image: `docker build -t cpm-exporter:0.1.0 .`
# Two stages: `build` makes the wheel; `runtime` installs it with the `node` extra (NVML, Kubernetes client,
# gRPC for the kubelet's PodResources socket) into a venv, and nothing else: no compiler, no test tools,
# no pip left behind. Runs as uid 65532 (the chart's default runAsUser); the chart's podResources mode
# overrides that with uid 0 because the kubelet's socket is root-only.
# Pin the base by digest in your registry mirror (e.g. python:3.12-slim-bookworm@sha256:…) for reproducible
# builds; the tag below never floats past Python 3.12 on Debian 12.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/cpm-exporter/bin:$PATH
# The wheel comes in through a bind mount, so it is not left in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/cpm-exporter \
    && set -- /wheels/cpm_exporter-*.whl \
    && /opt/cpm-exporter/bin/pip install "$1[node]" \
    && /opt/cpm-exporter/bin/pip uninstall --yes pip \
    && groupadd --system --gid 65532 cpm \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cpm
LABEL org.opencontainers.image.title="cpm-exporter" \
      org.opencontainers.image.description="Prometheus exporter of AI cost per million tokens" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
EXPOSE 9433
# No curl in slim images: the interpreter checks /healthz itself (urlopen raises on a non-2xx answer).
# With a TLS web config, set CPM_HEALTHCHECK_URL=https://127.0.0.1:9433/healthz (the loopback cert is not checked).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; r.urlopen(os.environ.get('CPM_HEALTHCHECK_URL', 'http://127.0.0.1:9433/healthz'), timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["cpm-exporter"]
# The config is mounted there (the Helm chart mounts its ConfigMap as /etc/cpm-exporter/).
CMD ["run", "--config", "/etc/cpm-exporter/config.yaml"]
