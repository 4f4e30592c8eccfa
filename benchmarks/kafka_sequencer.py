"""Sequencer throughput on Tansu (started here): an intake backlog decided by the worker.

Produces N submissions (check-ins of 12 orgs, 6 partitions) to intake, starts the worker as a
subprocess (hosted in Faust, and plain asyncio), and times from the worker's first
``sequencing`` log line until the last outcome is on the outcomes topic. Beside it: the
embedded ledger (SQLite) deciding the same submissions.
Usage: python benchmarks/kafka_sequencer.py [--submissions 50000] [--address host:port]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, OutRecord, Producer, Reader, partition_for
from events.kafka_records import org_key
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from tests.builders import check_ins, org_setup
from tests.kafka.broker import tansu_broker

PARTITIONS = 6


def workload(count: int) -> list[tuple[str, bytes]]:
    orgs = [f"org{i}" for i in range(12)]
    raws = [(org, raw) for org in orgs for raw in org_setup(org)]
    per_org = max(1, (count - len(raws)) // len(orgs))
    for org in orgs:
        raws.extend((org, raw) for raw in check_ins(per_org, org))
    return raws


def outcomes_count(reader: Reader, topic: str, positions: dict[int, int | None]) -> int:
    found = sum(1 for _ in reader.read(topic, positions))
    positions.update(reader.positions)
    return found


def run_worker(address: str, raws: list[tuple[str, bytes]], faust: bool, tmp: Path) -> float:
    kafka = Connection((address,), "okr-bench", 30.0)
    names = {
        r: f"bench.{uuid.uuid4().hex[:8]}.{r}"
        for r in ("intake", "ledger", "rejections", "outcomes")
    }
    ensure_topics(kafka, okr_topics(**names, partitions=PARTITIONS))
    producer = Producer(kafka)
    records = [
        OutRecord(names["intake"], partition_for(org_key(org), PARTITIONS), org_key(org), raw)
        for org, raw in raws
    ]
    for start in range(0, len(records), 5000):
        producer.send_all(records[start : start + 5000])
    producer.close()
    log_path = tmp / f"worker-{'faust' if faust else 'plain'}.log"
    env = {
        **os.environ,
        "OKR_LEDGER_URL": f"kafka://{address}",
        "OKR_DATA_DIR": str(tmp / "data"),
        **{f"OKR_KAFKA_TOPIC_{role.upper()}": name for role, name in names.items()},
    }
    flag = "--faust" if faust else "--no-faust"
    command = f"from okr_ledger.worker_cli import worker; worker(faust={faust})"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-c", command], env=env, stdout=log, stderr=log)
    try:
        while f"sequencing {names['intake']} partitions" not in log_path.read_text(
            errors="replace"
        ):
            if worker.poll() is not None:
                raise SystemExit(f"the worker ({flag}) exited; see {log_path}")
            time.sleep(0.01)
        started = time.monotonic()
        reader = Reader(kafka)
        positions: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
        seen = 0
        while seen < len(raws):
            seen += outcomes_count(reader, names["outcomes"], positions)
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        reader.close()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return len(raws) / elapsed


def run_embedded(raws: list[tuple[str, bytes]], tmp: Path) -> float:
    ledger = Ledger(SqliteEventLog(tmp / "embedded.db"))
    started = time.monotonic()
    for _ in ledger.submit_many((raw, None) for _, raw in raws):
        pass
    elapsed = time.monotonic() - started
    ledger.log.close()
    return len(raws) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--submissions", type=int, default=50_000)
    parser.add_argument("--address", help="host:port of a broker (default: start Tansu)")
    args = parser.parse_args()
    raws = workload(args.submissions)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        address = args.address or stack.enter_context(tansu_broker(tmp / "broker.log"))
        print(f"{len(raws)} submissions, {PARTITIONS} partitions")
        for faust in (True, False):
            rate = run_worker(address, raws, faust, tmp)
            print(f"kafka worker ({'faust' if faust else 'plain asyncio'}): {rate:,.0f} decided/s")
        print(f"embedded (SQLite): {run_embedded(raws, tmp):,.0f} decided/s")


if __name__ == "__main__":
    main()
