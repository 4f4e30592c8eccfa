"""A pytest plugin: the CPU of every test, phase by phase, this process's and its children's,
so that the CPU a fixture's process spent over many tests is not read as one test's.

A process's CPU reaches ``os.times()`` (``children_user``/``children_system``) only when it is
reaped: a session's Tansu broker when the last test of that xdist worker tears the session
down, a module's ``serve-store`` or HTTP server when the module's last test tears it down.
Charged to that test as a whole, its minutes of CPU make a quick test look like the heaviest
of the suite (a 20 CPU-s Kafka test read as 62 in a CI run, the broker's whole session added
to it). Here each test has three phases (setup, call, teardown), each with the CPU of this
process (``self``) and of the children reaped in it (``children``), and ``wider`` says that
its teardown also ended fixtures wider than a function's (the next test is in another module,
or there is none): read ``call`` for the test's own work, and ``teardown`` with ``wider`` for
the fixture processes it ended.

Writes one JSON line per test to ``$TEST_CPU_DIR/test-cpu-<xdist worker>.jsonl`` (default
``./test-cpu``), appended. Summarise them (per file, and the heaviest calls and wider
teardowns) with ``python benchmarks/profiling/phase_cpu.py [DIR]``.

Usage: CI=true PYTHONPATH=benchmarks/profiling pytest -p phase_cpu -n 2 tests/kafka
"""

import json
import os
import sys
from collections import defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

PHASES = ("setup", "call", "teardown")
_PHASES = pytest.StashKey[dict[str, list[float]]]()
"""A test's phases so far: name -> [this process's CPU, its reaped children's]."""
_OUT: dict[str, Any] = {}
"""The open output file (``file``), once a test has run."""


def _cpu() -> tuple[float, float]:
    """This process's CPU and that of its reaped children, in seconds."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def _file(item: pytest.Item | None) -> str | None:
    return None if item is None else item.nodeid.split("::")[0]


def _output() -> Any:
    if "file" not in _OUT:
        directory = Path(os.environ.get("TEST_CPU_DIR", "test-cpu"))
        directory.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        _OUT["file"] = (directory / f"test-cpu-{worker}.jsonl").open("a")
    return _OUT["file"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    item.stash[_PHASES] = {}
    yield
    record: dict[str, Any] = {"id": item.nodeid, "wider": _file(nextitem) != _file(item)}
    phases: dict[str, list[float]] = item.stash[_PHASES]
    record.update(phases)
    _output().write(json.dumps(record) + "\n")
    _output().flush()


def _phase(item: pytest.Item, name: str) -> Generator[None, None, None]:
    own, children = _cpu()
    yield
    own_after, children_after = _cpu()
    item.stash[_PHASES][name] = [round(own_after - own, 3), round(children_after - children, 3)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield from _phase(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield from _phase(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield from _phase(item, "teardown")


def _total(record: dict[str, Any], phases: tuple[str, ...] = PHASES) -> float:
    return sum(sum(record.get(phase, [0.0, 0.0])) for phase in phases)


def summary(directory: Path, top: int = 15) -> str:
    """Per file: the CPU of its tests' setups and calls, and of their teardowns (those that
    ended wider fixtures apart); the heaviest calls; the heaviest wider teardowns."""
    records = [
        json.loads(line)
        for path in sorted(directory.glob("test-cpu-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for record in records:
        found = files[record["id"].split("::")[0]]
        found[0] += _total(record, ("setup", "call"))
        teardown = _total(record, ("teardown",))
        found[2 if record["wider"] else 1] += teardown
        found[3] += 1
    everything = sum(_total(record) for record in records)
    lines = [
        f"{len(records)} tests, {everything:.1f} CPU-s (this process and reaped children)",
        "setup+call  teardown  wider-teardown  tests  file",
    ]
    for name, (work, teardown, wider, count) in sorted(files.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{work:10.1f} {teardown:9.1f} {wider:15.1f} {int(count):6d}  {name}")
    lines.append(f"heaviest calls (top {top}): self + children")
    calls = sorted(records, key=lambda r: -_total(r, ("call",)))[:top]
    lines += [f"{_total(r, ('call',)):7.2f}  {r['id']}" for r in calls]
    lines.append(f"heaviest teardowns that ended wider fixtures (top {top})")
    wide = sorted((r for r in records if r["wider"]), key=lambda r: -_total(r, ("teardown",)))
    lines += [f"{_total(r, ('teardown',)):7.2f}  {r['id']}" for r in wide[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1] if len(sys.argv) > 1 else "test-cpu")))
