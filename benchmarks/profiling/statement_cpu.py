"""A pytest plugin: the CPU of every statement the projection store runs, by the query code that
asked for it (the last three functions of ``projections/`` on the stack) and the statement's
first characters: how many times, CPU in all and per statement. The CPU is the process's
(``getrusage``: chDB's threads are this process's), the statements one at a time (an answer's
statements at once, :meth:`ProjectionStore.dicts_together`, run in turn here), so each one's
CPU is its own. Written when the session ends (``STATEMENT_CPU_OUT``, else
``statement-cpu.txt`` in the current directory); with xdist, one file per worker is not
kept apart: run without ``-n``.

Usage: CI=true PYTHONPATH=benchmarks/profiling pytest -p statement_cpu -p no:cacheprovider
       tests/projections/test_as_of_snapshots.py
"""

import atexit
import os
import resource
import traceback
from collections import defaultdict
from typing import Any

import projections.store as store_module

store_module.READERS = 0  # one statement at a time: each one's CPU its own

_stats: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0])
_query = store_module.ProjectionStore._query


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _caller() -> str:
    names = [
        frame.name
        for frame in traceback.extract_stack()[-12:-2]
        if "/projections/" in frame.filename and not frame.filename.endswith("store.py")
    ]
    return ">".join(names[-3:]) or "other"


def _measured(self: Any, query: str, parameters: Any, *args: Any, **kwargs: Any) -> Any:
    start = _cpu()
    try:
        return _query(self, query, parameters, *args, **kwargs)
    finally:
        found = _stats[_caller(), " ".join(query.split())[:110]]
        found[0] += 1
        found[1] += _cpu() - start


store_module.ProjectionStore._query = _measured  # type: ignore[method-assign]  # measuring only


def _write() -> None:
    total = sum(cpu for _count, cpu in _stats.values())
    lines = [f"statements {sum(int(n) for n, _ in _stats.values())}, CPU {total:.2f} s"]
    for (caller, sql), (count, cpu) in sorted(_stats.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"{cpu:7.2f} s {int(count):6d} {cpu / count * 1e3:6.2f} ms  {caller}  | {sql}")
    with open(os.environ.get("STATEMENT_CPU_OUT", "statement-cpu.txt"), "w") as out:
        out.write("\n".join(lines) + "\n")


atexit.register(_write)
