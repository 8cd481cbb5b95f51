# One image for every stage: the stage is the argument, `python -m bytewax.run dataflows.<stage>:flow`.
# Pinned base (Python 3.11: bytewax 0.21.1 has no 3.13 wheel); pin it by digest in your registry
# mirror for fully reproducible builds.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group claimx \
    && mkdir -p /var/lib/claimx /var/cache/claimx /etc/bytewax \
    && chown claimx:claimx /var/lib/claimx /var/cache/claimx /etc/bytewax
WORKDIR /app

# Dependencies first (cached while only the code changes), every version from the lock.
COPY constraints.txt pyproject.toml README.md ./
COPY claimx_flow ./claimx_flow
COPY operators ./operators
COPY dataflows ./dataflows
RUN pip install -c constraints.txt . && rm -rf /root/.cache

USER 10001:10001
ENV CLAIMX_DATA_DIR=/var/lib/claimx \
    CACHE_DIR=/var/cache/claimx
# Health and metrics (enrich 8081, download 8082, upload 8083, ingest 8084, results 8085,
# retry 8086), Bytewax's API (:3030/metrics with BYTEWAX_DATAFLOW_API_ENABLED), cluster mesh.
EXPOSE 8081 8082 8083 8084 8085 8086 3030 9999
# Exec form: Python runs as PID 1 and receives SIGTERM itself; the stages then end their inputs
# so the dataflow drains, closes its sinks and exits 0 (operators/shutdown.py).
ENTRYPOINT ["python", "-m", "bytewax.run"]
CMD ["dataflows.ingest:flow"]
