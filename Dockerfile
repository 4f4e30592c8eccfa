# The okr-ledger image of docker-compose.yml: `okr-ledger init`, `worker`, `serve`, the CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY events/ events/
COPY processors/ processors/
COPY projections/ projections/
COPY okr_ledger/ okr_ledger/
RUN pip install '.[kafka,clickhouse,http]' \
    && useradd --create-home --uid 10001 okr \
    && mkdir /data && chown okr:okr /data

USER okr
WORKDIR /home/okr
ENTRYPOINT ["okr-ledger"]
CMD ["--help"]
