"""A Kafka worker's memory as its ledger grows: fed in steps, or with the whole backlog at once.

Starts Tansu and a ``serve-store``, then one worker writing to it (so chDB is not in the worker's
process), sets up 12 orgs, and produces ``--check-ins`` check-ins in steps of ``--step``,
waiting after each step until the projections show it. After each step it prints the RSS of the
worker's main process and of its sequencer process (VmHWM, VmRSS, RssAnon, RssFile). With
``--step`` equal to ``--check-ins`` the worker meets the whole backlog at once: what it holds
then follows the backlog, not the ledger.

Anchor of the same run: the peak RSS of a process with the worker's imports alone.

Usage: python benchmarks/kafka_backlog_memory.py [--check-ins 300000] [--step 50000]
"""

import argparse
import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaProducer  # type: ignore[import-untyped]

from benchmarks.figures import children, process_memory
from benchmarks.kafka_throughput import (
    KEY_RESULTS,
    ROLES,
    Load,
    anchor_worker_baseline,
    produce,
    store_of,
    wait_visible,
)
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from tests.kafka.broker import tansu_broker
from tests.kafka.group_support import Group
from tests.projections.serve_store_support import served_store

ORGS = [f"bench{i}" for i in range(12)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check-ins", type=int, default=300_000)
    parser.add_argument("--step", type=int, default=50_000)
    args = parser.parse_args()
    print(f"load average before the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"anchor: the worker's imports alone, peak RSS {anchor_worker_baseline(None):,.0f} MiB")
    with tempfile.TemporaryDirectory(prefix="okr-bench-backlog-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        address = stack.enter_context(tansu_broker(work / "broker.log"))
        kafka = Connection((address,), "okr-bench", timeout_s=30.0)
        topics = {role: f"bench.{uuid.uuid4().hex[:8]}.{role}" for role in ROLES}
        ensure_topics(kafka, okr_topics(**topics, partitions=6))
        served = stack.enter_context(served_store(work / "store")).writer_url
        group = Group(kafka, topics, work, 6, served, batch_size=2000)
        stack.callback(group.stop_all)
        worker = group.start("w0")
        group.wait_spread(["w0"], {})
        store = stack.enter_context(store_of(group, [worker], served))
        producer = KafkaProducer(
            bootstrap_servers=[address], acks="all", enable_idempotence=True, linger_ms=5,
            batch_size=512 * 1024,
        )  # fmt: skip
        stack.callback(producer.close)
        load = Load.build(ORGS, args.check_ins)
        produce(producer, topics["intake"], load.setup)
        heads = dict.fromkeys(ORGS, KEY_RESULTS + 5)
        wait_visible(store, heads, [worker], 120)
        assert worker.process is not None
        pid = worker.process.pid
        for start in range(0, args.check_ins, args.step):
            step = load.check_ins[start : start + args.step]
            for org, _ in step:
                heads[org] += 1
            produce(producer, topics["intake"], step)
            wait_visible(store, heads, [worker], 1200)
            main_mib = process_memory(str(pid))
            spawned = [process_memory(str(child)) for child in children(pid)]
            sequencer = max(spawned, key=lambda m: m.get("VmHWM", 0), default={})
            print(f"{start + len(step):>9,} check-ins: main {main_mib}, sequencer {sequencer}")
    print(f"load average after the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
