# One image for every stage: the stage is the argument, `python -m bytewax.run dataflows.<stage>:flow`.
# The project is installed as a wheel, with the runtime dependencies only, pinned by
# constraints-runtime.txt; no source checkout is in the image. Production builds from the pinned
# official base (Python 3.11: bytewax 0.21.1 has no 3.13 wheel; pin it by digest in your registry
# mirror); the image test passes a local base with --build-arg BASE_IMAGE (see docs/kubernetes.md).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# Stage 1: the wheel, built from pyproject.toml.
FROM ${BASE_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY claimx_flow ./claimx_flow
COPY operators ./operators
COPY dataflows ./dataflows
COPY kafka_pipeline ./kafka_pipeline
RUN python3 -m venv /opt/build \
    && PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
       /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the runtime.
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CLAIMX_DATA_DIR=/var/lib/claimx \
    CACHE_DIR=/var/cache/claimx
# Health and metrics (enrich 8081, download 8082, upload 8083, ingest 8084, results 8085,
# retry 8086), Bytewax's API (:3030/metrics with BYTEWAX_DATAFLOW_API_ENABLED), cluster mesh.
EXPOSE 8081 8082 8083 8084 8085 8086 3030 9999
# Exec form: Python runs as PID 1 and receives SIGTERM itself; the stages then end their inputs
# so the dataflow drains, closes its sinks and exits 0 (operators/shutdown.py).
ENTRYPOINT ["python", "-m", "bytewax.run"]
CMD ["dataflows.ingest:flow"]
RUN useradd --create-home --uid 10001 --user-group claimx \
    && mkdir -p /var/lib/claimx /var/cache/claimx /etc/bytewax \
    && chown claimx:claimx /var/lib/claimx /var/cache/claimx /etc/bytewax \
    && python3 -m venv /opt/venv
WORKDIR /app
# What the Bytewax Helm chart (waxctl) starts in the image's working directory: the stage named by
# BYTEWAX_PYTHON_FILE_PATH, and the recovery partitions (docs/kubernetes.md, "waxctl").
COPY image/entrypoint.sh image/entrypoint-recovery.sh ./
# Dependencies first, from the runtime lock: this layer stays cached while only the code changes.
COPY constraints-runtime.txt ./
RUN pip install -r constraints-runtime.txt
# Then the project's wheel (--no-index: a dependency missing from the lock fails the build).
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-index -c constraints-runtime.txt /tmp/wheels/*.whl \
    && pip check \
    && rm -rf /tmp/wheels
USER 10001:10001
