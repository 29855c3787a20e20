# Baton's image: the package with its example extras, the `baton` console script.
FROM python:3.11-slim
WORKDIR /opt/baton
COPY pyproject.toml README.md ./
COPY events ./events
COPY orchestrator ./orchestrator
COPY agents ./agents
COPY examples ./examples
RUN pip install --no-cache-dir ".[examples]"
ENV BATON_HOME=/var/lib/baton
ENTRYPOINT []
CMD ["baton", "up"]
