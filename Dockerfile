# One image for every stage: `python -m bytewax.run dataflows.<stage>` is chosen by the command.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 claimx
WORKDIR /app

COPY constraints.txt pyproject.toml README.md ./
COPY claimx_flow ./claimx_flow
COPY operators ./operators
COPY dataflows ./dataflows
RUN pip install -c constraints.txt . && rm -rf /root/.cache

USER claimx
ENV CLAIMX_DATA_DIR=/var/lib/claimx
# Exec form: Python runs as PID 1 and receives SIGTERM itself (the dataflows handle it).
ENTRYPOINT ["python", "-m", "bytewax.run"]
CMD ["dataflows.ingest:flow"]
