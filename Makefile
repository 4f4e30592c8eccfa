# Every target works alone on a fresh clone: the virtualenv is created on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format typecheck pytest bench schema clean venv compose-check lock explore

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
# one more than the cores, as the Kafka tests wait on brokers, groups and subprocesses while
# the projection tests keep a core busy. On 2 cores, 3 beat 4 and 2 (docs/ARCHITECTURE.md,
# "The suite's time"). The 20 slowest tests are listed at the end: CI's budget for all of
# `make test` is 15 minutes.
PYTEST_WORKERS ?= $(shell python3 -c 'import os; print((os.cpu_count() or 1) + 1)')
pytest: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=20

# The property tests (EXPLORE_TESTS: every file with `@given`) with new random draws, ROUNDS
# times, each round under a new seed it prints first: a failure prints its example and how to
# reproduce it. CI draws the same examples every run (tests/conftest.py), so it never explores:
# run this nightly, or after changing the projector or the rules.
ROUNDS ?= 3
EXPLORE_TESTS ?= $(shell grep -rl --include='test_*.py' '@given' tests)
explore: $(STAMP)
	@for round in $$(seq $(ROUNDS)); do \
		seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
		echo "round $$round of $(ROUNDS): --hypothesis-seed=$$seed"; \
		env -u CI $(BIN)/pytest -q -n $(PYTEST_WORKERS) --hypothesis-seed=$$seed \
			$(EXPLORE_TESTS) || exit 1; \
	done

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

# Regenerate the committed JSON Schema export after changing a model, and the projection
# store's baseline (the tables a new store is made with at once) after adding a migration.
schema: $(STAMP)
	$(BIN)/okr-ledger schema --write schemas/json
	$(PY) -m projections.baseline

# Figures, not assertions: each script prints events/s, latencies and peak memory beside raw
# anchors of the same run, and writes them to benchmarks/.work/figures/. benchmarks/suite.py
# builds the shared inputs once (the 1,000,000-check-in ledger, ...), runs every script one after
# the other (its list: `$(PY) benchmarks/suite.py --list`; one alone: `--only NAME`) and ends
# with one summary table, its own time against the 15-minute target among it.
bench: $(STAMP)
	$(PY) benchmarks/suite.py

clean:
	rm -rf $(VENV) .okr-ledger .mypy_cache .pytest_cache .ruff_cache .hypothesis
