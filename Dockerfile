# Baton's image: the `baton` command, with the digits example so the default pipeline runs.
# compose.yaml builds it twice: baton:dev (coordinator, CPU agent) and, for the GPU agent,
#   docker build --build-arg EXTRAS=examples,gpu,torch -t baton:gpu .
# which adds NVML (GPU detection) and torch (its CUDA libraries come with the PyPI wheels; the
# driver comes from the host through the NVIDIA Container Toolkit).
FROM python:3.11-slim

ARG EXTRAS=examples
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/baton
COPY pyproject.toml README.md ./
COPY events ./events
COPY bus ./bus
COPY orchestrator ./orchestrator
COPY agents ./agents
COPY examples ./examples
RUN pip install ".[${EXTRAS}]"

# Tasks run as an ordinary user. The home (projections, artifacts, agent ledgers, datasets)
# is a volume mounted on /var/lib/baton: the directory exists and belongs to that user, so a
# new named volume starts out writable by it.
RUN useradd --system --user-group --create-home --uid 10001 baton \
    && mkdir -p /var/lib/baton \
    && chown baton:baton /var/lib/baton
ENV BATON_HOME=/var/lib/baton
USER baton
WORKDIR /home/baton

ENTRYPOINT ["baton"]
CMD ["up"]
