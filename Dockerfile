# The okr-ledger image of docker-compose.yml: `okr-ledger init`, `worker`, `serve`, the CLI.
# Dependencies come from requirements.lock (pinned versions with hashes; `make lock` refreshes it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# First, alone: this layer is rebuilt only when the lock file changes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md LICENSE ./
COPY schemas/ schemas/
COPY events/ events/
COPY processors/ processors/
COPY projections/ projections/
COPY okr_ledger/ okr_ledger/
# Every dependency is installed already, from the lock file: the project itself only.
RUN pip install --no-deps . \
    && pip check \
    && useradd --create-home --uid 10001 okr \
    && mkdir /data && chown okr:okr /data

USER okr
WORKDIR /home/okr
ENTRYPOINT ["okr-ledger"]
CMD ["--help"]
