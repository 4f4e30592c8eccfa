"""The Kafka sequencer's batches without a broker: where a batch's time goes, by stage.

Decides ``--check-ins`` check-ins (after the orgs' setup) in batches of ``--batch`` on one
:class:`~processors.kafka_sequencer.PartitionSequencer` with a state file
(:class:`~processors.sequencer_state.FileState`, as the worker runs it), the writes replaced by
nothing (the ledger offsets counted as a writer would give them). Prints CPU per event of
deciding (parsing, probing, loading the view: ``BEGIN`` and the bulk reads, and the rules with
the reads they make on demand) and of keeping (saving the state, ``COMMIT``); the view load
alone (the same batches again, only entering the state's transaction timed); SQLite statements
per batch (as traced: ``executemany`` counts once per row); and the same batches on the state
in memory (:class:`~processors.sequencer_state.MemoryState`), the anchor with nothing to read
or save.

Usage: python benchmarks/kafka_state_batches.py [--check-ins 60000] [--batch 1000]
       [--key-results 100] [--orgs 1] [--repeat 3]
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import check_in, setup
from events.intake_wire import intake_message, parse_intake
from events.sequencer import probe
from processors.kafka_sequencer import IntakeRecord, PartitionSequencer
from processors.sequencer_state import FileState, MemoryState, PartitionState
from schemas.envelope import utc_now


def _intake(orgs: int, check_ins: int, key_results: int) -> list[IntakeRecord]:
    raws = [raw for o in range(orgs) for raw in setup(f"org{o}", key_results)]
    raws += [check_in(f"org{i % orgs}", i, key_results) for i in range(check_ins)]
    records = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"s{offset}", None)
        records.append(IntakeRecord(0, offset, message.value, message.headers, message.key))
    return records


class _Clock:
    """Wall and CPU time by stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


def run(state: PartitionState, intake: list[IntakeRecord], batch: int, setup_n: int) -> _Clock:
    """Sequence ``intake``; time the check-ins' batches only (after ``setup_n`` records)."""
    sequencer = PartitionSequencer(0, 1, state=state)
    clock, ledger_next, batches = _Clock(), 0, 0
    statements = [0]
    db = getattr(getattr(state, "store", None), "_db", None)
    if db is not None:  # executemany: one per row
        db.set_trace_callback(lambda _: statements.__setitem__(0, statements[0] + 1))
    now = utc_now()
    for start in range(0, len(intake), batch):
        records = intake[start : start + batch]
        if start == setup_n:
            statements[0] = 0
        if start < setup_n:
            clock = _Clock()  # not timed
        batches += start >= setup_n
        with clock.stage("decide (parse, probe, view, rules)"):
            deciding = sequencer.deciding(records, now)
            output = deciding.__enter__()
        with clock.stage("keep + commit"):
            ledger_next += len(output.events)
            sequencer.keep(output, ledger_next if output.events else None, 0)
            deciding.__exit__(None, None, None)
    clock.wall["statements/batch"] = statements[0] / max(1, batches)
    return clock


def view_load(state: PartitionState, intake: list[IntakeRecord], batch: int, n: int) -> float:
    """CPU seconds of the view loads alone (entering the state's ``deciding``: ``BEGIN`` and
    the bulk reads) over the timed batches, the same batches again on a fresh sequencer."""
    sequencer = PartitionSequencer(0, 1, state=state)
    spent, ledger_next = 0.0, 0
    now = utc_now()
    for start in range(0, len(intake), batch):
        records = intake[start : start + batch]
        probes = [probe(r.value, sequencer.policy) for r in records]
        intakes = [parse_intake(r.value, r.headers, sequencer.policy.max_bytes) for r in records]
        cpu = time.process_time()
        with state.deciding(probes) as view:
            if start >= n:
                spent += time.process_time() - cpu
            output = sequencer._decide_all(view, records, intakes, probes, now)
            ledger_next += len(output.events)
            sequencer.keep(output, ledger_next if output.events else None, 0)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check-ins", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--key-results", type=int, default=100)
    parser.add_argument("--orgs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    intake = _intake(args.orgs, args.check_ins, args.key_results)
    setup_n = len(intake) - args.check_ins
    setup_n += (-setup_n) % args.batch  # time whole batches of check-ins only
    timed = len(intake) - setup_n
    print(
        f"{timed:,} check-ins timed in batches of {args.batch} ({args.orgs} org(s), "
        f"{args.key_results} key results each), after {setup_n:,} records of setup"
    )
    for round_ in range(args.repeat):
        for name in ("memory", "file"):
            with tempfile.TemporaryDirectory(prefix="okr-state-batches-") as tmp:
                path = Path(tmp) / "partition-0.db"
                state: PartitionState = FileState(path, 0) if name == "file" else MemoryState()
                clock = run(state, intake, args.batch, setup_n)
                state.close()
                load = ""
                if name == "file":
                    state = FileState(Path(tmp) / "again.db", 0)
                    alone = view_load(state, intake, args.batch, setup_n)
                    state.close()
                    load = (
                        f"; view load alone {1e6 * alone / timed:.2f} µs CPU/event; "
                        f"{clock.wall['statements/batch']:,.1f} statements/batch"
                    )
            stages = ("decide (parse, probe, view, rules)", "keep + commit")
            cpu, wall = sum(clock.cpu[k] for k in stages), sum(clock.wall[k] for k in stages)
            parts = ", ".join(f"{k} {1e6 * clock.cpu[k] / timed:.2f}" for k in stages)
            print(
                f"round {round_ + 1} {name:>6}: {timed / wall:,.0f} events/s, "
                f"{1e6 * cpu / timed:.2f} µs CPU/event ({parts}){load}"
            )


if __name__ == "__main__":
    main()
