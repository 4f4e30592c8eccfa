"""A long crash soak of the Kafka worker: SIGKILL it at random moments while submissions
stream in, restart it each time, then check every invariant the short test checks.

Prints what it did and PASS, or FAIL with the broken invariant (exit 1). Starts its own Tansu
broker. Usage: python benchmarks/kafka_crash_soak.py [--kills 30] [--orgs 6] [--rounds 400]
"""

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from tests.builders import check_ins, org_setup
from tests.kafka.broker import tansu_broker
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.test_sequencer_worker import (
    Submitter,
    Worker,
    assert_exactly_once,
    wait_for_outcomes,
)


def workload(orgs: int, rounds: int, seed: int) -> list[bytes]:
    """Each org's setup first, then shuffled check-ins, resends and broken submissions."""
    names = [f"org{i}" for i in range(orgs)]
    setup = [raw for org in names for raw in org_setup(org)]
    rest = [raw for _ in range(rounds) for org in names for raw in check_ins(4, org)]
    chance = random.Random(seed)
    rest += chance.sample(rest, len(rest) // 20)  # resends: duplicates
    rest += [b"{broken", next(check_ins(1, "org0", key_result_id="nope"))] * (rounds // 10 + 1)
    chance.shuffle(rest)
    return setup + rest


def soak(args: argparse.Namespace, work: Path) -> int:
    raws = workload(args.orgs, args.rounds, args.seed)
    started = time.perf_counter()
    with tansu_broker(work / "broker.log") as address:
        kafka = Connection((address,), "okr-soak", timeout_s=15.0)
        suffix = uuid.uuid4().hex[:8]
        topics = {r: f"soak.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
        ensure_topics(kafka, okr_topics(**topics, partitions=TEST_PARTITIONS))
        submitter = Submitter(kafka, topics["intake"])
        done = threading.Event()

        def stream() -> None:
            try:
                for start in range(0, len(raws), 50):
                    submitter.send(raws[start : start + 50])
                    time.sleep(0.05)
            finally:
                done.set()

        chance = random.Random(args.seed)
        kills = 0
        worker = Worker(kafka, topics, work / "worker.log", args.batch_size)
        worker.start()
        try:
            producer = threading.Thread(target=stream)
            producer.start()
            while kills < args.kills or not done.is_set():
                worker.wait_ready(kills + 1, timeout_s=60.0)
                time.sleep(chance.uniform(0.0, args.max_gap))
                worker.kill()
                kills += 1
                worker.start()
            producer.join()
            outcomes = wait_for_outcomes(
                kafka, topics["outcomes"], set(submitter.sent), worker, timeout_s=300.0
            )
            cut = worker.cut_batches()
        finally:
            worker.stop()
            submitter.close()
        elapsed = time.perf_counter() - started
        print(f"submissions {len(raws):,} over {elapsed:.0f} s; worker SIGKILLed {kills} times")
        print(f"kills that cut a batch mid-write: {cut}")
        try:
            statuses = assert_exactly_once(kafka, topics, submitter)
            for submission_id, documents in outcomes.items():
                assert {d["status"] for d in documents} == {statuses[submission_id]}, (
                    f"{submission_id}: outcomes {documents} disagree with {statuses[submission_id]}"
                )
        except AssertionError as error:
            print(f"FAIL: {error}")
            return 1
    counts = Counter(statuses.values())
    print(
        f"outcomes: accepted {counts['accepted']:,}, duplicate {counts['duplicate']:,}, "
        f"rejected {counts['rejected']:,}"
    )
    print("PASS: every submission once in the ledger or the rejections, no gap, chains verify,")
    print("      every outcome agrees with the embedded ledger's decision")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=400, help="check-ins per org / 4")
    parser.add_argument("--batch-size", type=int, default=50, help="OKR_SEQUENCER_BATCH_SIZE")
    parser.add_argument("--max-gap", type=float, default=0.3, help="seconds alive before a kill")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(soak(args, Path(tmp)))


if __name__ == "__main__":
    main()
