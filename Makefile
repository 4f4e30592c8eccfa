# Every target works alone on a fresh clone: the virtualenv is created on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format typecheck pytest bench schema clean venv compose-check

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
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

pytest: $(STAMP)
	$(BIN)/pytest -q

# Validate docker-compose.yml without a Docker engine (Debian's docker-compose package).
compose-check:
	docker-compose config -q

# Regenerate the committed JSON Schema export after changing a model.
schema: $(STAMP)
	$(BIN)/okr-ledger schema --write schemas/json

# Figures, not assertions: each script prints events/s, latencies and peak memory.
# Sizes are options of each script; these defaults take a few minutes on 2 cores.
bench: $(STAMP)
	$(PY) benchmarks/submit_throughput.py --lines 100000
	$(PY) benchmarks/command_latency.py --check-ins 10000,1000000 --samples 7
	$(PY) benchmarks/verify_throughput.py --check-ins 200000
	$(PY) benchmarks/projection_throughput.py --key-results 1000 --check-ins 200000
	$(PY) benchmarks/kafka_end_to_end.py --check-ins 30000 --lag-samples 10000 --rate 500
	$(PY) benchmarks/kafka_crash_soak.py --kills 30

clean:
	rm -rf $(VENV) .okr-ledger .mypy_cache .pytest_cache .ruff_cache .hypothesis
