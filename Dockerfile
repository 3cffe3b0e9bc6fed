# The image every orchestrator service runs (workers, migrations, Flower); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the package needs (no .venv, .git or local state from the build context).
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY migrations ./migrations
COPY examples ./examples

RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 orchestrator \
    && chown orchestrator:orchestrator /app

USER orchestrator

ENV ORCHESTRATOR_WORKFLOWS=/app/examples

CMD ["orchestrator", "worker"]
