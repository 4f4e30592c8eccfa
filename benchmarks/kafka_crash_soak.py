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

``--store-outages N`` also takes the store down N times, at random moments (one in each N-th of
the stream's time, once the one before has caught up), from a thread of its own while the kills
go on: in turn SIGKILLed and started again on its port after ``--store-down`` seconds (2-6),
and SIGSTOPped for longer than ``OKR_PROJECTOR_STALL_SECONDS`` (``--stall-seconds``, 5 here;
paused that plus 5-10 s) and SIGCONTed (docs/ARCHITECTURE.md, "The projector when its store is
down"). The workers project in batches of at most ``--projector-batch-size`` (200 here), so
that a full batch soon waits on an insert the paused store holds and the stall is seen;
``OKR_PROJECTOR_RETRY_MAX_SECONDS`` is ``--retry-max-seconds`` (5). The soak is then the
workers' orchestrator: a worker that exits on its own is started again, and its exit classified
from its log and exit code. One that exits while *starting* (`the worker cannot start`) because
the store is down (an outage under way during its start, or ended at most ``DOWN_GRACE_S``
before it) is the documented behaviour (a store that cannot be opened at start ends the worker)
and is only counted; any other exit of a worker is a FAIL, one because of the store first of
all (a start that failed on the store while it was up, too). After each outage it times how
long the projections take to reach the ledger's end as it was when the store came back (each
org's head, each rejections lane's last rejection; a FAIL past ``--catch-up-timeout``), with
the events the projections were behind then, and counts the workers' "cannot write the store"
lines while it was down and after it until caught up (the store up, a worker the soak paused in
a take or an insert wakes up past the stall limit and its projector goes down too, then
recovers; so might one that a busy machine makes that slow). At the end, besides the invariants
above: every worker's ``/healthz`` says its projector is projecting.
``--work-dir`` keeps the logs (the broker's, the store's, each worker's).

Prints what it did, the time of each phase, and PASS, or FAIL with the broken invariant
(exit 1); either way, the verdict goes to benchmarks/.work/figures/crash_soak.json
(``benchmarks/summary.py``).
Usage: python benchmarks/kafka_crash_soak.py [--kills 30] [--workers 3] [--orgs 9] [--rounds 400]
       [--rate 200] [--max-gap 2] [--store-outages 4] [--work-dir DIR]
"""

import argparse
import math
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures
from benchmarks.phases import Phases
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from processors import tables as t
from projections.store import ProjectionStore
from tests.builders import check_ins, org_setup
from tests.kafka.broker import tansu_broker
from tests.kafka.group_support import (
    Group,
    assert_outcomes_agree_with_the_ledger,
    ledger_ends,
    wait_projected,
)
from tests.kafka.projector_support import cli
from tests.kafka.store_support import BACK, DOWN, kill, page, restart
from tests.kafka.worker_support import (
    Submitter,
    Worker,
    assert_exactly_once,
    log_failures,
    wait_for_outcomes,
)
from tests.projections.serve_store_support import ServedStore, start_store

PARTITIONS = 6
INVARIANTS = "nothing lost or doubled, no gap, chains verify, outcomes agree, = rebuild"
CANNOT_START = "the worker cannot start"
"""What a worker logs when its start fails (the store could not be opened, say)."""
STORE_FAILED = (
    "ProjectionUnavailableError",
    "cannot open the projection store",
    "OperationalError",
    "the projection store",
    "ConnectionRefused",
)
"""What a failure of the store looks like in a worker's log."""
DOWN_GRACE_S = 10.0
"""How long after the store came back a start that failed on it still counts as the outage's:
a store just started again (or SIGCONTed) may answer slowly at first."""
UNAVAILABLE = "ProjectionUnavailableError"
"""What a worker that cannot open the store (refused, cut, timed out) fails with."""


def verdict(
    raws: int, kills: int, pauses: int, seconds: float, *, held: bool, note: str, outages: int
) -> Figures:
    store = f" and {outages} store outages" if outages else ""
    figures = Figures("crash_soak", f"crash soak: Kafka workers SIGKILLed and paused{store}")
    figures.add(f"submissions through {kills} SIGKILLs and {pauses} pauses{store}", raws,
                "submissions", (INVARIANTS, held), note=f"{seconds:.0f} s; {note}")  # fmt: skip
    return figures


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


@dataclass
class Exit:
    """A worker that exited on its own (not SIGKILLed by the soak)."""

    worker: str
    code: int | None
    starting: bool
    """It logged ``the worker cannot start``: its start failed."""
    store: bool
    """Its failure names the store."""
    log: str
    store_down: bool = False
    """The store was down (an outage under way) at some moment of its run."""

    @property
    def cause(self) -> str:
        where = "at start" if self.starting else "while running"
        return f"{'the store' if self.store else 'other'}, {where}"

    @property
    def allowed(self) -> bool:
        """A start refused while the store is down: documented (the orchestrator retries).
        Refused for the store while it was up is a FAIL (a healthy store that its start took
        for one that answers nothing, say)."""
        return self.starting and self.store and self.store_down


@dataclass
class Supervisor:
    """Starts the workers, and with store outages starts again any that exited on its own,
    noting why (the soak's orchestrator)."""

    group: Group
    restart_exited: bool
    began: dict[str, int] = field(default_factory=dict)
    """The size of each worker's log when it was last started: its current run's log after."""
    started_at: dict[str, float] = field(default_factory=dict)
    """When each worker was last started (``time.monotonic``)."""
    exits: list[Exit] = field(default_factory=list)
    downs: list[list[float]] = field(default_factory=list)
    """The store's outages, ``[began, back]`` (``time.monotonic``; ``back`` is infinity while
    it is down), filled by :class:`StoreOutages`."""

    def store_down_since(self, since: float) -> bool:
        """Whether the store was down at some moment from ``since`` until now (with the stall
        limit's grace after it came back: a start's read may end that late)."""
        return any(back + DOWN_GRACE_S >= since for _began, back in self.downs)

    def start(self, name: str) -> Worker:
        worker = self.group.workers.get(name)
        self.started_at[name] = time.monotonic()
        if worker is None:
            self.began[name] = 0
            return self.group.start(name)
        self.began[name] = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        worker.start()
        return worker

    def revive(self) -> int:
        """Every worker that exited on its own noted and started again; how many."""
        if not self.restart_exited:
            return 0
        revived = 0
        for name, worker in self.group.workers.items():
            if worker.process is None or worker.process.poll() is None:
                continue
            with worker.log_path.open("rb") as file:
                file.seek(self.began.get(name, 0))
                text = file.read().decode(errors="replace")
            failures = log_failures(text, failures=4, tail=10)
            starting = CANNOT_START in text
            if starting:  # what it could not start for: the traceback that follows
                store = UNAVAILABLE in text[text.index(CANNOT_START) :][:20_000]
            else:
                store = any(mark in failures for mark in STORE_FAILED)
            down = self.store_down_since(self.started_at.get(name, 0.0))
            self.exits.append(
                Exit(name, worker.process.returncode, starting, store, failures, down)
            )
            kind = self.exits[-1].cause
            print(f"  worker {name} exited ({kind}, code {worker.process.returncode}); restarted")
            self.start(name)
            revived += 1
        return revived

    def spread(self, among: list[str], since: dict[str, int], timeout_s: float) -> None:
        """:meth:`Group.wait_spread`; with store outages, each worker that exited meanwhile
        noted and started again."""
        if not self.restart_exited:
            self.group.wait_spread(among, since, timeout_s=timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        while True:
            self.revive()
            try:
                left = max(1.0, min(5.0, deadline - time.monotonic()))
                self.group.wait_spread(among, since, timeout_s=left)
                return
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise


@dataclass
class Outage:
    kind: str
    began: float
    """Seconds since the soak started."""
    down_s: float
    noticed: int
    """The workers' "cannot write the store" lines while it was down."""
    after: int = 0
    """Those lines from the store back until caught up (an operation that outlasted the
    stall limit on a store that answers again, slowly)."""
    streaming: bool = True
    """Whether the submissions were still streaming in when it began."""
    backlog: int | None = None
    """Events the projections were behind the ledger when the store came back (None: the
    store's checkpoints never read)."""
    caught_up_s: float | None = None
    """From the store back to the projections at the ledger's end as it was then."""


def behind(outage: Outage) -> str:
    return "?" if outage.backlog is None else f"{outage.backlog:,}"


class StoreOutages(threading.Thread):
    """Takes the store down ``count`` times at random moments (a thread of its own)."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        store: ServedStore,
        data_dir: Path,
        group: Group,
        kafka: Connection,
        topics: dict[str, str],
        stream_s: float,
        streamed: threading.Event,
        started: float,
        windows: list[list[float]],
    ) -> None:
        """``windows``: where each outage's ``[began, back]`` goes (the supervisor's)."""
        super().__init__(name="store-outages", daemon=True)
        self.windows = windows
        self.args, self.store, self.data_dir, self.group = args, store, data_dir, group
        self.kafka, self.topics, self.started = kafka, topics, started
        self.stream_s, self.streamed = stream_s, streamed
        self.chance = random.Random(args.seed + 1)
        self.outages: list[Outage] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()
        """Set when the soak ends early (a FAIL): no further outage, no more waiting."""
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            count, begun = self.args.store_outages, time.monotonic()
            for index in range(count):
                # One in each n-th of the stream's time, once the one before has caught up.
                due = begun + self.stream_s * (index + self.chance.uniform(0.1, 0.6)) / count
                if self.stopping.wait(max(2.0, due - time.monotonic())):
                    break
                self.outage("kill" if index % 2 == 0 else "stop")
        except BaseException as error:  # reported as a failure of the soak
            self.failures.append(f"the store outages stopped: {type(error).__name__}: {error}")
        finally:
            if self.store.process.poll() is None:
                self.store.process.send_signal(signal.SIGCONT)
            self.finished.set()

    def downs(self) -> int:
        logs = (w.log_path for w in self.group.workers.values())
        return sum(p.read_text(errors="replace").count(DOWN) for p in logs if p.exists())

    def outage(self, kind: str) -> None:
        before = self.downs()
        began, streaming = time.monotonic(), not self.streamed.is_set()
        window = [began, math.inf]
        self.windows.append(window)
        if kind == "kill":
            kill(self.store)
            time.sleep(self.chance.uniform(*self.args.store_down))
            self.store = restart(self.store, self.data_dir)
        else:
            self.store.process.send_signal(signal.SIGSTOP)
            time.sleep(self.args.stall_seconds + self.chance.uniform(5.0, 10.0))
            self.store.process.send_signal(signal.SIGCONT)
        back = window[1] = time.monotonic()
        outage = Outage(kind, began - self.started, back - began, self.downs() - before, 0)
        outage.streaming = streaming
        before = self.downs()
        self.outages.append(outage)
        print(f"  store {kind} #{len(self.outages)}: down {outage.down_s:.1f} s", flush=True)
        outage.caught_up_s = self.caught_up(back, outage)
        outage.after = self.downs() - before
        if outage.caught_up_s is None and not self.stopping.is_set():
            self.failures.append(
                f"the projections did not reach the ledger's end {self.args.catch_up_timeout:g}"
                f" s after store outage #{len(self.outages)} ({kind}) ended"
            )
        print(
            f"  store {kind} #{len(self.outages)}: projections caught up "
            f"{'never' if outage.caught_up_s is None else f'{outage.caught_up_s:.1f} s'} after "
            f"({behind(outage)} events behind{'' if streaming else ', the stream over'}); "
            f"'cannot write the store' lines: {outage.noticed} while down, {outage.after} after",
            flush=True,
        )

    def caught_up(self, back: float, outage: Outage) -> float | None:
        """Seconds from ``back`` until the store's checkpoints reach the ledger's heads and
        each lane's last rejection as they were at ``back`` (None: not within the timeout);
        the events behind them at the first read go to ``outage.backlog``."""
        heads, last = ledger_ends(self.kafka, self.topics)
        deadline = back + self.args.catch_up_timeout
        first = True
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                with ProjectionStore.open(self.store.writer_url, migrate=False) as store:
                    while time.monotonic() < deadline and not self.stopping.is_set():
                        ledger, lanes = store.positions(), store.positions(t.REJECTION_STREAM)
                        if first:
                            outage.backlog = sum(
                                max(0, s - ledger.get(o, 0)) for o, s in heads.items()
                            )
                            first = False
                        if all(ledger.get(o, 0) >= s for o, s in heads.items()) and all(
                            lanes.get(q, 0) >= p for q, p in last.items()
                        ):
                            return time.monotonic() - back
                        time.sleep(0.2)
            except Exception as error:  # the store still waking: try again
                print(f"  reading the store's checkpoints failed ({error}); trying again")
                time.sleep(1.0)
        return None


def projectors_up(group: Group, timeout_s: float = 60.0) -> None:
    """Until every worker's ``/healthz`` says its projector is projecting."""
    deadline = time.monotonic() + timeout_s
    for name, worker in group.workers.items():
        while (health := page(worker, "/healthz"))[1].get("projector") != "projecting":
            assert time.monotonic() < deadline, f"{name}'s projector is not up: {health}"
            time.sleep(0.5)


def soak(args: argparse.Namespace, work: Path) -> int:
    raws = workload(args.orgs, args.rounds, args.seed)
    started = time.perf_counter()
    begun_at = time.monotonic()
    phases = Phases()
    names = [chr(ord("a") + i) for i in range(args.workers)]
    outages: StoreOutages | None = None
    data_dir = work / "store"
    with tansu_broker(work / "broker.log") as address:
        store = start_store(data_dir)
        kafka = Connection((address,), "okr-soak", timeout_s=15.0)
        suffix = uuid.uuid4().hex[:8]
        topics = {r: f"soak.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
        ensure_topics(kafka, okr_topics(**topics, partitions=PARTITIONS))
        submitter = Submitter(kafka, topics["intake"], partitions=PARTITIONS)
        group = Group(kafka, topics, work, PARTITIONS, store.writer_url, args.batch_size)
        if args.store_outages:
            group.env.update(
                {
                    "OKR_PROJECTOR_STALL_SECONDS": f"{args.stall_seconds:g}",
                    "OKR_PROJECTOR_RETRY_MAX_SECONDS": f"{args.retry_max_seconds:g}",
                    "OKR_PROJECTOR_BATCH_SIZE": str(args.projector_batch_size),
                }
            )
        supervisor = Supervisor(group, restart_exited=args.store_outages > 0)
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
                supervisor.start(name)
            group.wait_spread(names, {})
            phases.done("broker, store, workers spread")
            producer = threading.Thread(target=stream)
            producer.start()
            if args.store_outages:
                outages = StoreOutages(
                    args,
                    store=store,
                    data_dir=data_dir,
                    group=group,
                    kafka=kafka,
                    topics=topics,
                    stream_s=len(raws) / args.rate,
                    streamed=done,
                    started=begun_at,
                    windows=supervisor.downs,
                )
                outages.start()
            while (
                kills + pauses < args.kills
                or not done.is_set()
                or (outages is not None and not outages.finished.is_set())
            ):
                time.sleep(chance.uniform(0.0, args.max_gap))
                supervisor.revive()
                victim = chance.choice(names)
                since = group.counts()
                if args.pause_every and (kills + pauses + 1) % args.pause_every == 0:
                    group.pause(victim)  # its partitions move; it wakes up a zombie
                    others = [n for n in names if n != victim]
                    supervisor.spread(others, {**since, victim: 0}, timeout_s=120)
                    since = group.counts()
                    group.resume(victim)
                    pauses += 1
                else:
                    group.workers[victim].kill()
                    supervisor.start(victim)
                    kills += 1
                supervisor.spread(names, since, timeout_s=120)
            producer.join()
            if outages is not None:
                outages.join()
                store = outages.store
                since = group.counts()
                if supervisor.revive():
                    supervisor.spread(names, since, timeout_s=120)
            done_what = "kills and pauses" if outages is None else "kills, pauses, store outages"
            phases.done(f"{done_what} while the submissions stream")
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
            if outages is not None:
                projectors_up(group)
                supervisor.revive()
                failed = [e for e in supervisor.exits if not e.allowed]
                assert not failed, "workers exited: " + "\n".join(
                    f"{e.worker} ({e.cause}, code {e.code}):\n{e.log}" for e in failed
                )
                assert not outages.failures, "; ".join(outages.failures)
            env = {k: v for k, v in any_worker.env.items() if k.startswith("OKR_")}
            rebuilt = cli(env, "rebuild")
            assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
            assert "identical" in rebuilt.stdout, rebuilt.stdout
            phases.done("rebuild identical")
        except AssertionError as error:
            print(f"FAIL: {error}")
            elapsed = time.perf_counter() - started
            note = f"FAIL: {str(error)[:200]}"
            figures = verdict(
                len(raws), kills, pauses, elapsed, held=False, note=note,
                outages=args.store_outages,
            )  # fmt: skip
            report_outages(figures, outages, supervisor, kills, group)
            print(f"figures: {figures.write()}")
            return 1
        finally:
            submitter.close()
            group.stop_all()
            if outages is not None:
                outages.stopping.set()
                outages.finished.wait(60)
                store = outages.store
            store.process.send_signal(signal.SIGCONT)
            store.stop()
    elapsed = time.perf_counter() - started
    counts = Counter(statuses.values())
    print(
        f"submissions {len(raws):,} over {elapsed:.0f} s; {args.workers} workers, "
        f"SIGKILLed {kills} times, paused {pauses} times"
        + (f", the store down {len(outages.outages)} times" if outages is not None else "")
    )
    phases.done("stop")
    print(phases.line())
    print(
        f"outcomes: accepted {counts['accepted']:,}, duplicate {counts['duplicate']:,}, "
        f"rejected {counts['rejected']:,}"
    )
    print("PASS: every submission once in the ledger or the rejections, no gap, chains verify,")
    print("      every outcome agrees with the ledger, the projections equal a rebuild")
    if outages is not None:
        print("      no worker exited because of the store (but at start), every projector up")
    note = ", ".join(f"{name} {counts[name]:,}" for name in ("accepted", "duplicate", "rejected"))
    figures = verdict(
        len(raws), kills, pauses, elapsed, held=True, note=note, outages=args.store_outages
    )
    report_outages(figures, outages, supervisor, kills, group)
    print(f"figures: {figures.write()}")
    return 0


def report_outages(
    figures: Figures,
    outages: StoreOutages | None,
    supervisor: Supervisor,
    kills: int,
    group: Group,
) -> None:
    """The store outages' figures: the restarts by cause, each outage's catch-up."""
    if outages is None:
        return
    causes = Counter(e.cause for e in supervisor.exits)
    running = sum(1 for e in supervisor.exits if e.store and not e.starting)
    print(
        f"restarts: {kills} after the soak's SIGKILLs, {len(supervisor.exits)} after exits of "
        "their own (" + (", ".join(f"{c} {n}" for c, n in sorted(causes.items())) or "none") + ")"
    )
    figures.add(
        "worker exits because of the store while running",
        running,
        "exits",
        ("0", running == 0),
        note=f"restarts: {kills} after the soak's SIGKILLs; exits on their own "
        + (", ".join(f"{c} {n}" for c, n in sorted(causes.items())) or "none"),
    )
    logs = [w.log_path.read_text(errors="replace") for w in group.workers.values()]
    figures.add(
        "projector down / back lines, all workers",
        sum(text.count(DOWN) for text in logs),
        "lines",
        note=f"back {sum(text.count(BACK) for text in logs)}",
    )
    for number, outage in enumerate(outages.outages, 1):
        caught = outage.caught_up_s
        figures.add(
            f"store outage {number} ({outage.kind} at {outage.began:.0f} s, down "
            f"{outage.down_s:.1f} s): back -> projections at the ledger's end",
            -1.0 if caught is None else caught,
            "s",
            (f"<= {outages.args.catch_up_timeout:g}", caught is not None),
            note=f"{behind(outage)} events behind when back"
            + ("" if outage.streaming else ", the stream over")
            + f"; 'cannot write the store' lines: {outage.noticed} while down, "
            f"{outage.after} after",
        )


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
    outage = parser.add_argument_group("store outages")
    outage.add_argument("--store-outages", type=int, default=0, help="store kills and pauses")
    outage.add_argument(
        "--store-down",
        type=float,
        nargs=2,
        default=(2.0, 6.0),
        metavar=("MIN", "MAX"),
        help="seconds a killed store stays down",
    )
    outage.add_argument(
        "--stall-seconds",
        type=float,
        default=5.0,
        help="OKR_PROJECTOR_STALL_SECONDS; a pause lasts 5-10 s more",
    )
    outage.add_argument(
        "--retry-max-seconds", type=float, default=5.0, help="OKR_PROJECTOR_RETRY_MAX_SECONDS"
    )
    outage.add_argument(
        "--projector-batch-size", type=int, default=200, help="OKR_PROJECTOR_BATCH_SIZE"
    )
    outage.add_argument(
        "--catch-up-timeout",
        type=float,
        default=180.0,
        help="seconds after an outage for the projections to catch up",
    )
    parser.add_argument("--work-dir", type=Path, help="keep the logs here (default: a temp dir)")
    args = parser.parse_args()
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        sys.exit(soak(args, args.work_dir))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(soak(args, Path(tmp)))


if __name__ == "__main__":
    main()
