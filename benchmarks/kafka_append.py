"""Append throughput of the Kafka event log on Tansu (started here), beside SQLite's.

Appends batches of 1000 chained events (one org per batch, then ten orgs per batch), then reads
them back with a fresh log: ``heads()`` (a full scan) and ``read()``. Prints events/s.
Usage: python benchmarks/kafka_append.py [--batches 10] [--address host:port]
"""

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from events.kafka_log import KafkaEventLog
from events.log import EventLog
from events.sqlite_log import SqliteEventLog
from schemas.envelope import LedgerEvent
from tests.builders import chained_events
from tests.kafka.broker import tansu_broker

BATCH = 1000


def workloads(batches: int) -> dict[str, list[list[LedgerEvent]]]:
    """Same events, two shapes: one org per batch, and ten orgs per batch."""
    orgs = [chained_events(f"org{i}", check_in_count=BATCH - 7) for i in range(batches)]
    mixed = [
        [e for org in orgs[g : g + 10] for e in org[k * 100 : (k + 1) * 100]]
        for g in range(0, batches, 10)
        for k in range(10)
    ]
    return {"1 org/batch": orgs, "10 orgs/batch": mixed if batches % 10 == 0 else []}


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run(name: str, open_log: Callable[[], EventLog], batches: list[list[LedgerEvent]]) -> None:
    log = open_log()
    events = sum(len(b) for b in batches)
    seconds = [timed(partial(log.append, batch)) for batch in batches]
    log.close()
    fresh = open_log()
    scan = timed(fresh.heads)
    read = timed(lambda: sum(1 for _ in fresh.read()))
    fresh.close()
    best = BATCH / min(seconds)
    print(
        f"{name:28} append {events / sum(seconds):8,.0f} events/s (best batch {best:,.0f}/s)"
        f" | heads() scan {events / scan:8,.0f}/s | read() {events / read:8,.0f}/s"
    )


def kafka_log_factory(address: str, partitions: int) -> Callable[[], EventLog]:
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    names = {r: f"{prefix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    ensure_topics(Connection((address,)), okr_topics(**names, partitions=partitions))
    return lambda: KafkaEventLog(
        address, ledger_topic=names["ledger"], rejections_topic=names["rejections"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--address", help="an existing broker (default: start Tansu)")
    args = parser.parse_args()
    shapes = workloads(args.batches)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        address = args.address or stack.enter_context(tansu_broker(work / "tansu.log"))
        for shape, batches in shapes.items():
            if not batches:
                continue
            run(f"kafka {shape}", kafka_log_factory(address, args.partitions), batches)
            db = work / f"{uuid.uuid4().hex}.db"
            run(f"sqlite {shape}", partial(SqliteEventLog, db), batches)


if __name__ == "__main__":
    main()
