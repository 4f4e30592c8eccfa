# Every target works alone on a fresh clone: the virtualenv is created on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format typecheck pytest bench schema clean venv compose-check lock

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
# setuptools warns on every editable install of a flat layout (top-level packages, as this
# project has by design) that folders named like a package shadow it: that warning is silenced.
	PYTHONWARNINGS=ignore:::setuptools.command.editable_wheel \
		$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/okr-ledger demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

# The tests run in PYTEST_WORKERS processes (pytest-xdist; each starts its own Kafka broker):
# much of the suite waits on brokers, consumer groups and subprocesses, not on a core.
# The 20 slowest tests are listed at the end: CI's budget for all of `make test` is 15 minutes.
PYTEST_WORKERS ?= 3
pytest: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=20

# Validate docker-compose.yml without a Docker engine (Debian's docker-compose package).
compose-check:
	docker-compose config -q

# Refresh requirements.lock, the pinned versions (with hashes) the Docker image installs: after
# changing a dependency in pyproject.toml. Pins that still fit are kept; UPGRADE=1 takes the
# newest versions of everything.
LOCK_EXTRAS := --extra kafka --extra clickhouse --extra http
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		$(LOCK_EXTRAS) --output-file requirements.lock pyproject.toml

# Regenerate the committed JSON Schema export after changing a model.
schema: $(STAMP)
	$(BIN)/okr-ledger schema --write schemas/json

# Figures, not assertions: each script prints events/s, latencies and peak memory beside raw
# anchors of the same run, and writes them to benchmarks/.work/figures/; summary.py prints
# them all as one table. Sizes are options of each script.
bench: $(STAMP)
	$(PY) benchmarks/submit_throughput.py --lines 100000
	$(PY) benchmarks/command_latency.py --check-ins 10000,1000000 --samples 7
	$(PY) benchmarks/verify_throughput.py --check-ins 200000
	$(PY) benchmarks/projection_throughput.py --key-results 1000 --check-ins 1000000 --samples 10 --cli-samples 3
	$(PY) benchmarks/catch_up_latency.py --sizes 10000,1000000 --rounds 3
	$(PY) benchmarks/takeover_cost.py --sizes 10000,1000000 --rounds 7
	$(PY) benchmarks/kafka_end_to_end.py --check-ins 30000 --lag-samples 10000 --rate 500
	$(PY) benchmarks/kafka_crash_soak.py --kills 30
	$(PY) benchmarks/kafka_throughput.py
	$(PY) benchmarks/kafka_floor.py
	$(PY) benchmarks/kafka_failover.py --kills 10
	$(PY) benchmarks/kafka_restore.py --events 1000000 --ratio
	$(PY) benchmarks/http_intake.py --seconds 60
	$(PY) benchmarks/summary.py

clean:
	rm -rf $(VENV) .okr-ledger .mypy_cache .pytest_cache .ruff_cache .hypothesis
