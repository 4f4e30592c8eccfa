"""A long crash soak of the Kafka workers: several in one group, SIGKILLed (and paused) at
random moments while submissions stream in, each restarted; then every invariant is checked.

Starts its own Tansu broker and an ``okr-ledger serve-store`` that every worker projects into.
Each round picks a worker at random and SIGKILLs it (or, with ``--pause-every``, SIGSTOPs it
until its partitions have moved, then SIGCONTs it: a zombie), and restarts it. At the end:
every submission is in the ledger or the rejections exactly once, no gap, the chains verify,
every outcome agrees with the ledger, and the projections equal a rebuild.

The submissions stream in at ``--rate`` a second, so they keep coming while the workers are
killed (at 200/s the default workload lasts about 75 s: about as long as 10 kills and pauses,
what ``make bench`` runs); the kills go on until both are done.

Prints what it did, the time of each phase, and PASS, or FAIL with the broken invariant
(exit 1); either way, the verdict goes to benchmarks/.work/figures/crash_soak.json
(``benchmarks/summary.py``).
Usage: python benchmarks/kafka_crash_soak.py [--kills 30] [--workers 3] [--orgs 9] [--rounds 400]
       [--rate 200] [--max-gap 2]
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

from benchmarks.figures import Figures
from benchmarks.phases import Phases
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from tests.builders import check_ins, org_setup
from tests.kafka.broker import tansu_broker
from tests.kafka.group_support import Group, assert_outcomes_agree_with_the_ledger, wait_projected
from tests.kafka.projector_support import cli
from tests.kafka.worker_support import Submitter, assert_exactly_once, wait_for_outcomes
from tests.projections.serve_store_support import served_store

PARTITIONS = 6
INVARIANTS = "nothing lost or doubled, no gap, chains verify, outcomes agree, = rebuild"


def verdict(raws: int, kills: int, pauses: int, seconds: float, *, held: bool, note: str) -> None:
    figures = Figures("crash_soak", "crash soak: Kafka workers SIGKILLed and paused")
    figures.add(f"submissions through {kills} SIGKILLs and {pauses} pauses", raws,
                "submissions", (INVARIANTS, held), note=f"{seconds:.0f} s; {note}")  # fmt: skip
    print(f"figures: {figures.write()}")


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
    phases = Phases()
    names = [chr(ord("a") + i) for i in range(args.workers)]
    with tansu_broker(work / "broker.log") as address, served_store(work / "store") as store:
        kafka = Connection((address,), "okr-soak", timeout_s=15.0)
        suffix = uuid.uuid4().hex[:8]
        topics = {r: f"soak.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
        ensure_topics(kafka, okr_topics(**topics, partitions=PARTITIONS))
        submitter = Submitter(kafka, topics["intake"], partitions=PARTITIONS)
        group = Group(kafka, topics, work, PARTITIONS, store.writer_url, args.batch_size)
        done = threading.Event()

        def stream() -> None:
            begun = time.monotonic()
            try:
                for start in range(0, len(raws), 50):
                    submitter.send(raws[start : start + 50])
                    time.sleep(max(0.0, begun + (start + 50) / args.rate - time.monotonic()))
            finally:
                done.set()

        chance = random.Random(args.seed)
        kills = pauses = 0
        try:
            for name in names:
                group.start(name)
            group.wait_spread(names, {})
            phases.done("broker, store, workers spread")
            producer = threading.Thread(target=stream)
            producer.start()
            while kills + pauses < args.kills or not done.is_set():
                time.sleep(chance.uniform(0.0, args.max_gap))
                victim = chance.choice(names)
                since = group.counts()
                if args.pause_every and (kills + pauses + 1) % args.pause_every == 0:
                    group.pause(victim)  # its partitions move; it wakes up a zombie
                    others = [n for n in names if n != victim]
                    group.wait_spread(others, {**since, victim: 0}, timeout_s=120)
                    since = group.counts()
                    group.resume(victim)
                    pauses += 1
                else:
                    group.workers[victim].kill()
                    group.workers[victim].start()
                    kills += 1
                group.wait_spread(names, since, timeout_s=120)
            producer.join()
            phases.done("kills and pauses while the submissions stream")
            any_worker = group.workers[names[0]]
            outcomes = wait_for_outcomes(
                kafka, topics["outcomes"], set(submitter.sent), any_worker, timeout_s=300.0
            )
            phases.done("every outcome read")
            statuses = assert_exactly_once(kafka, topics, submitter)
            assert_outcomes_agree_with_the_ledger(kafka, topics, outcomes, statuses)
            phases.done("exactly once, outcomes agree")
            wait_projected(any_worker, store.writer_url, kafka, topics, timeout_s=300)
            phases.done("projections caught up")
            env = {k: v for k, v in any_worker.env.items() if k.startswith("OKR_")}
            rebuilt = cli(env, "rebuild")
            assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
            assert "identical" in rebuilt.stdout, rebuilt.stdout
            phases.done("rebuild identical")
        except AssertionError as error:
            print(f"FAIL: {error}")
            elapsed = time.perf_counter() - started
            note = f"FAIL: {str(error)[:200]}"
            verdict(len(raws), kills, pauses, elapsed, held=False, note=note)
            return 1
        finally:
            submitter.close()
            group.stop_all()
    elapsed = time.perf_counter() - started
    counts = Counter(statuses.values())
    print(
        f"submissions {len(raws):,} over {elapsed:.0f} s; {args.workers} workers, "
        f"SIGKILLed {kills} times, paused {pauses} times"
    )
    phases.done("stop")
    print(phases.line())
    print(
        f"outcomes: accepted {counts['accepted']:,}, duplicate {counts['duplicate']:,}, "
        f"rejected {counts['rejected']:,}"
    )
    print("PASS: every submission once in the ledger or the rejections, no gap, chains verify,")
    print("      every outcome agrees with the ledger, the projections equal a rebuild")
    note = ", ".join(f"{name} {counts[name]:,}" for name in ("accepted", "duplicate", "rejected"))
    verdict(len(raws), kills, pauses, elapsed, held=True, note=note)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs and pauses in all")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--pause-every", type=int, default=5, help="every n-th: SIGSTOP instead")
    parser.add_argument("--orgs", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=400, help="check-ins per org / 4")
    parser.add_argument("--batch-size", type=int, default=50, help="OKR_SEQUENCER_BATCH_SIZE")
    parser.add_argument("--max-gap", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--rate", type=float, default=200.0, help="submissions a second")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(soak(args, Path(tmp)))


if __name__ == "__main__":
    main()
