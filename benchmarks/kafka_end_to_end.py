"""Kafka end to end: submissions produced to intake until visible in ClickHouse, beside embedded.

Starts Tansu (or uses ``--address`` / ``OKR_BENCH_KAFKA=host:port``), creates fresh topics with
``okr-ledger init`` and starts ``okr-ledger worker`` (sequencer, projector into its embedded chDB
store, query endpoint) as a subprocess. Then:

1. throughput: the setup of each org (strategy, theme, unit, period, an objective, K key
   results) and N check-ins spread over the key results, produced to intake at full speed
   (kafka-python, ``acks=all``, idempotent, keyed by org_id); timed from the first produce
   until every org's checkpoint in the projections (polled through the worker's query
   endpoint with clickhouse-connect's HTTP client) reaches its last sequence;
2. freshness lag: a fresh org's check-ins produced at a steady rate; each one's lag runs from
   the moment it is due until the first poll that sees its sequence checkpointed;
3. the embedded path, in a child process after the worker and broker are stopped: the same
   submissions through ``Ledger.submit_many`` (SQLite) and ``EmbeddedRunner.catch_up`` (chDB),
   and the same steady rate (submit, then catch up).

The worker logs at DEBUG; its sequencer and projector batch lines give the breakdown.
Figures go to benchmarks/.work/figures/kafka_end_to_end.json (``benchmarks/summary.py``; the
targets of issue 8 are judged by ``kafka_throughput.py``, on a larger ledger).
Usage: python benchmarks/kafka_end_to_end.py [--check-ins 30000] [--key-results 100]
       [--rate 500] [--lag-samples 10000] [--partitions 6] [--orgs 1]
"""

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures as Written
from benchmarks.figures import process_memory
from benchmarks.workload import check_in, setup
from events.kafka_records import org_key
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from processors.runner import EmbeddedRunner
from projections.query_credentials import TOKEN_FILE, read_token
from projections.store import ProjectionStore
from tests.kafka.broker import broker_address

LAG_ORG = "lag"
CLI = Path(sys.executable).parent / "okr-ledger"
ROLES = ("intake", "ledger", "rejections", "outcomes")
_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)[,.](\d{3})")
_SEQUENCED = re.compile(r"partition \d+: offsets \d+-\d+, (\d+) events")
_SEQUENCED_RANGE = re.compile(r"partition (\d+): offsets (\d+)-(\d+), \d+ events")
_PROJECTED = re.compile(r"projected (\d+) records")


# --- workload -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    throughput: list[tuple[str, bytes]]
    """(org, submission) in produce order: every org's setup, then the check-ins."""
    heads: dict[str, int]
    """org -> its last sequence once the throughput submissions are all accepted."""
    lag_setup: list[bytes]
    lag_check_ins: list[bytes]

    @classmethod
    def build(cls, orgs: int, key_results: int, check_ins: int, lag_samples: int) -> "Workload":
        names = [f"bench{j}" for j in range(orgs)]
        raws = [(org, raw) for org in names for raw in setup(org, key_results)]
        heads = dict.fromkeys(names, key_results + 5)
        for i in range(check_ins):
            org = names[i % orgs]
            raws.append((org, check_in(org, i // orgs, key_results)))
            heads[org] += 1
        return cls(
            raws,
            heads,
            setup(LAG_ORG, key_results),
            [check_in(LAG_ORG, i, key_results) for i in range(lag_samples)],
        )


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass(slots=True)
class Figures:
    events: int = 0
    produced_s: float = 0.0
    """Until the last submission was acknowledged (Kafka) or decided (embedded)."""
    visible_s: float = 0.0
    lags: list[float] = field(default_factory=list)
    achieved_rate: float = 0.0
    peak_mib: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.visible_s if self.visible_s else 0.0

    def lag(self, q: float) -> str:
        return f"{percentile(self.lags, q) * 1000:,.0f} ms" if self.lags else "-"

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "produced_s": self.produced_s,
            "visible_s": self.visible_s,
            "lags": self.lags,
            "achieved_rate": self.achieved_rate,
            "peak_mib": self.peak_mib,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> "Figures":
        return cls(**document)


# --- the Kafka path -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_time(line: str) -> float | None:
    match = _LOG_TIME.search(line)
    if match is None:
        return None
    moment = datetime.strptime(match[1].replace("T", " "), "%Y-%m-%d %H:%M:%S")
    return moment.timestamp() + int(match[2]) / 1000  # local time, as logging writes it


class Worker:
    """``okr-ledger worker`` on fresh topics, with its own data directory and query port."""

    def __init__(self, address: str, work: Path, partitions: int) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topics = {role: f"bench.{suffix}.{role}" for role in ROLES}
        self.port = _free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
        self.env = {
            **inherited,
            "OKR_LEDGER_URL": f"kafka://{address}",
            "OKR_DATA_DIR": str(work / "worker-data"),
            "OKR_KAFKA_PARTITIONS": str(partitions),
            "OKR_WORKER_WEB_PORT": str(self.port),
            "OKR_WORKER_APP_ID": f"okr-bench-{suffix}",
            "OKR_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            **{f"OKR_KAFKA_TOPIC_{role.upper()}": name for role, name in self.topics.items()},
        }
        self.work = work
        self.log_path = work / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def init_topics(self) -> str:
        done = subprocess.run(
            [str(CLI), "init"],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"okr-ledger init failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        command = [str(CLI), "worker"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.work,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def check(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise SystemExit(f"the worker exited; its log ({self.log_path}):\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        markers = (
            f"sequencing {self.topics['intake']} partitions",
            "projecting ledger partitions",
        )
        deadline = time.monotonic() + timeout_s
        while not all(m in self.log_path.read_text(errors="replace") for m in markers):
            self.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start in {timeout_s:.0f}s:\n{self.tail()}")
            time.sleep(0.05)

    def store(self) -> ProjectionStore:
        token = read_token(Path(self.env["OKR_DATA_DIR"]) / TOKEN_FILE)
        url = f"http://reader:{token}@127.0.0.1:{self.port}/okr_ledger"
        return ProjectionStore.open(url, migrate=False)

    def peak_mib(self) -> float:
        """The worker's peak resident memory so far (VmHWM)."""
        if self.process is None:
            return 0.0
        try:
            return float(process_memory(str(self.process.pid)).get("VmHWM", 0))
        except OSError:
            return 0.0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def sequenced_at(self, positions: set[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """(intake partition, offset) -> when the sequencer logged the batch deciding it."""
        found: dict[tuple[int, int], float] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = _SEQUENCED_RANGE.search(line)
            moment = _log_time(line) if match else None
            if match is None or moment is None:
                continue
            partition, first, last = int(match[1]), int(match[2]), int(match[3])
            for offset in range(first, last + 1):
                if (partition, offset) in positions:
                    found[(partition, offset)] = moment
        return found

    def batches(self, since: float, until: float) -> dict[str, list[tuple[float, int]]]:
        """Sequencer and projector batches logged in [since, until] (wall clock): (time, n)."""
        found: dict[str, list[tuple[float, int]]] = {"sequenced": [], "projected": []}
        for line in self.log_path.read_text(errors="replace").splitlines():
            for name, pattern in (("sequenced", _SEQUENCED), ("projected", _PROJECTED)):
                match = pattern.search(line)
                moment = _log_time(line) if match else None
                if match and moment is not None and since - 0.001 <= moment <= until + 0.001:
                    found[name].append((moment, int(match[1])))
        return found


def _producer(address: str) -> Any:
    return KafkaProducer(
        bootstrap_servers=[address],
        client_id="okr-bench-source",
        acks="all",
        enable_idempotence=True,
        batch_size=256 * 1024,
    )


def wait_visible(
    worker: Worker, store: ProjectionStore, heads: dict[str, int], poll_s: float, timeout_s: float
) -> float:
    """Until every org's checkpoint reaches its head; the perf_counter time it was seen."""
    deadline = time.perf_counter() + timeout_s
    while True:
        positions = store.positions()
        seen = time.perf_counter()
        if all(positions.get(org, 0) >= head for org, head in heads.items()):
            return seen
        worker.check()
        if seen > deadline:
            raise SystemExit(
                f"projections at {positions}, not {heads} after {timeout_s:.0f}s "
                f"(a rejection? see {worker.log_path}):\n{worker.tail()}"
            )
        time.sleep(poll_s)


def kafka_throughput(
    worker: Worker, producer: Any, store: ProjectionStore, load: Workload, poll_s: float
) -> Figures:
    intake = worker.topics["intake"]
    started_wall, started = time.time(), time.perf_counter()
    for org, raw in load.throughput:
        producer.send(intake, key=org_key(org), value=raw)
    producer.flush()
    produced = time.perf_counter() - started
    visible = wait_visible(worker, store, load.heads, poll_s, 600.0) - started
    figures = Figures(len(load.throughput), produced, visible, peak_mib=worker.peak_mib())
    time.sleep(0.3)  # let the last log lines land
    batches = worker.batches(started_wall, started_wall + visible)
    figures.notes += batch_notes(batches, started_wall)
    return figures


def batch_notes(batches: dict[str, list[tuple[float, int]]], started: float) -> list[str]:
    """One line per kind of batch: how many, how big, when (seconds after ``started``)."""
    notes = []
    for name, found in batches.items():
        if not found:
            notes.append(f"{name}: no batch lines in the worker log")
            continue
        count = sum(n for _t, n in found)
        first, last = found[0][0] - started, found[-1][0] - started
        gaps = [b[0] - a[0] for a, b in pairwise(found)]
        gap = f", median gap {percentile(gaps, 0.5) * 1000:,.0f} ms" if gaps else ""
        notes.append(
            f"{name} {count:,} events in {len(found):,} batches "
            f"(mean {count / len(found):,.0f}, max {max(n for _t, n in found):,}{gap}), "
            f"first logged at {first:.2f} s, last at {last:.2f} s"
        )
    return notes


def kafka_lag(
    worker: Worker,
    producer: Any,
    store: ProjectionStore,
    load: Workload,
    *,
    rate: float,
    poll_s: float,
) -> Figures:
    """Setup of a fresh org, then its check-ins produced at ``rate``; lag per check-in."""
    intake, key = worker.topics["intake"], org_key(LAG_ORG)
    for raw in load.lag_setup:
        producer.send(intake, key=key, value=raw)
    producer.flush()
    first_sequence = len(load.lag_setup) + 1
    wait_visible(worker, store, {LAG_ORG: first_sequence - 1}, poll_s, 120.0)
    count = len(load.lag_check_ins)
    start = time.perf_counter() + 0.05
    sent_at: list[float] = []
    futures: list[Any] = []
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            while (sent := len(sent_at)) < count:
                now = time.perf_counter()
                due = min(count, int((now - start) * rate) + 1) if now >= start else 0
                for i in range(sent, due):
                    futures.append(producer.send(intake, key=key, value=load.lag_check_ins[i]))
                    sent_at.append(time.perf_counter())
                time.sleep(0.002)
            producer.flush()
        except BaseException as error:
            failed.append(error)
            raise

    thread = threading.Thread(target=produce, name="steady-producer", daemon=True)
    thread.start()
    lags: list[float] = []
    deadline = start + count / rate + 120.0
    while len(lags) < count:
        position = store.positions().get(LAG_ORG, 0)
        seen = time.perf_counter()
        for i in range(len(lags), min(count, position - first_sequence + 1)):
            lags.append(seen - (start + i / rate))  # from the moment it was due
        if failed:
            raise SystemExit(f"the steady producer failed: {failed[0]!r}")
        worker.check()
        if seen > deadline:
            raise SystemExit(f"{count - len(lags)} check-ins not visible:\n{worker.tail()}")
        time.sleep(poll_s)
    thread.join()
    late = max(s - (start + i / rate) for i, s in enumerate(sent_at))
    figures = Figures(count, lags=lags, peak_mib=worker.peak_mib())
    figures.achieved_rate = (count - 1) / (sent_at[-1] - sent_at[0]) if count > 1 else 0.0
    figures.notes.append(f"the steady producer was at most {late * 1000:,.0f} ms behind schedule")
    time.sleep(0.3)  # let the last log lines land
    wall = time.time() - time.perf_counter()  # perf_counter -> wall clock
    positions = [(int(m.partition), int(m.offset)) for m in (f.get(timeout=30) for f in futures)]
    sequenced = worker.sequenced_at(set(positions))
    if len(sequenced) == count:
        in_ledger = [sequenced[at] - (wall + start + i / rate) for i, at in enumerate(positions)]
        projected = [lag - seq for lag, seq in zip(lags, in_ledger, strict=True)]
        figures.notes.append(
            "due -> its sequencer batch logged (in the ledger, outcomes sent): "
            f"p50 {percentile(in_ledger, 0.5) * 1000:,.0f} ms, "
            f"p99 {percentile(in_ledger, 0.99) * 1000:,.0f} ms; "
            f"then -> visible: p50 {percentile(projected, 0.5) * 1000:,.0f} ms, "
            f"p99 {percentile(projected, 0.99) * 1000:,.0f} ms"
        )
    until = wall + time.perf_counter()
    figures.notes += batch_notes(worker.batches(wall + start, until), wall + start)
    return figures


def run_kafka(args: argparse.Namespace, load: Workload, work: Path) -> tuple[Figures, Figures]:
    with ExitStack() as stack:
        address = broker_address(args.address, work, stack)
        worker = Worker(address, work, args.partitions)
        print(worker.init_topics(), flush=True)
        worker.start()
        stack.callback(worker.stop)
        worker.wait_ready()
        store = stack.enter_context(worker.store())
        producer = _producer(address)
        stack.callback(producer.close, 10)
        poll_s = args.poll_ms / 1000
        throughput = kafka_throughput(worker, producer, store, load, poll_s)
        print(f"kafka throughput done: {throughput.rate:,.0f} events/s", flush=True)
        lag = kafka_lag(worker, producer, store, load, rate=args.rate, poll_s=poll_s)
        print(f"kafka lag done: p50 {lag.lag(0.5)}", flush=True)
        if args.keep:
            shutil.copy(worker.log_path, args.keep)
    return throughput, lag


# --- the embedded path (a child process) ----------------------------------------------------


def run_embedded_child(load: Workload, rate: float, work: Path) -> tuple[Figures, Figures]:
    log = SqliteEventLog(work / "ledger.db")
    ledger = Ledger(log)
    store = ProjectionStore.open(f"chdb://{work / 'clickhouse'}")
    runner = EmbeddedRunner(log, store)
    try:
        started = time.perf_counter()
        outcomes = list(ledger.submit_many((raw, None) for _org, raw in load.throughput))
        decided = time.perf_counter() - started
        runner.catch_up()
        visible = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        throughput = Figures(len(load.throughput), decided, visible, peak_mib=peak)
        accepted = sum(1 for o in outcomes if o.status == "accepted")
        throughput.notes.append(f"accepted {accepted:,} of {len(outcomes):,}")

        list(ledger.submit_many((raw, None) for raw in load.lag_setup))
        runner.catch_up()
        count, done, lags, handed = len(load.lag_check_ins), 0, [], []
        start = time.perf_counter()
        while done < count:
            now = time.perf_counter()
            due = min(count, int((now - start) * rate) + 1)
            if due <= done:
                time.sleep(max(0.0, start + done / rate - now))
                continue
            handed += [now] * (due - done)
            list(ledger.submit_many((raw, None) for raw in load.lag_check_ins[done:due]))
            runner.catch_up()
            seen = time.perf_counter()
            lags += [seen - (start + i / rate) for i in range(done, due)]
            done = due
        lag = Figures(count, lags=lags)
        lag.achieved_rate = (count - 1) / (handed[-1] - handed[0]) if count > 1 else 0.0
        behind = max(h - (start + i / rate) for i, h in enumerate(handed))
        lag.notes.append(
            f"steady: {len(set(handed)):,} submit+catch-up rounds, check-ins handed to the "
            f"ledger at most {behind * 1000:,.0f} ms after due"
        )
        lag.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        store.close()
        log.close()
    return throughput, lag


def run_embedded(args: argparse.Namespace, work: Path) -> tuple[Figures, Figures]:
    directory = work / "embedded"
    directory.mkdir()
    command = [sys.executable, __file__, "--embedded-child", str(directory)]
    command += _size_options(args)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the embedded run failed:\n{done.stderr}")
    result = orjson.loads(done.stdout.splitlines()[-1])
    return Figures.from_json(result["throughput"]), Figures.from_json(result["lag"])


def _size_options(args: argparse.Namespace) -> list[str]:
    return [
        f"--check-ins={args.check_ins}",
        f"--key-results={args.key_results}",
        f"--rate={args.rate}",
        f"--lag-samples={args.lag_samples}",
        f"--orgs={args.orgs}",
    ]


# --- report ---------------------------------------------------------------------------------


def report(
    args: argparse.Namespace, kafka: tuple[Figures, Figures], embedded: tuple[Figures, Figures]
) -> None:
    (kt, kl), (et, el) = kafka, embedded
    rows = [
        ("end-to-end throughput", f"{kt.rate:,.0f} events/s", f"{et.rate:,.0f} events/s"),
        ("  submissions", f"{kt.events:,}", f"{et.events:,}"),
        ("  produced+acked / decided", f"{kt.produced_s:.2f} s", f"{et.produced_s:.2f} s"),
        ("  visible in ClickHouse", f"{kt.visible_s:.2f} s", f"{et.visible_s:.2f} s"),
        (
            f"freshness lag at {args.rate:g}/s",
            f"({kl.events:,} check-ins)",
            f"({el.events:,} check-ins)",
        ),
        ("  achieved rate", f"{kl.achieved_rate:,.0f}/s", f"{el.achieved_rate:,.0f}/s"),
        ("  p50", kl.lag(0.5), el.lag(0.5)),
        ("  p99", kl.lag(0.99), el.lag(0.99)),
        ("  max", kl.lag(1.0), el.lag(1.0)),
        ("peak memory (RSS)", f"{kl.peak_mib:,.0f} MiB (worker)", f"{el.peak_mib:,.0f} MiB"),
    ]
    worker = "Faust worker"
    print()
    print(
        f"{args.orgs} org(s), {args.key_results} key results, {args.check_ins:,} check-ins; "
        f"{args.partitions} partitions; polled every {args.poll_ms:g} ms"
    )
    print(f"{'':30} {'Kafka (' + worker + ')':>26} {'embedded (SQLite+chDB)':>24}")
    for label, left, right in rows:
        print(f"{label:30} {left:>26} {right:>24}")
    for title, notes in (
        ("kafka throughput", kt.notes),
        ("kafka lag", kl.notes),
        ("embedded", et.notes),
        ("embedded lag", el.notes),
    ):
        for note in notes:
            print(f"{title}: {note}")
    written = Written("kafka_end_to_end", f"Kafka end to end, one worker: {args.check_ins:,} "
                      f"check-ins, {args.partitions} partitions")  # fmt: skip
    written.add("Kafka, one worker: produced until visible in ClickHouse", kt.rate, "events/s",
                anchor=f"the embedded path, same submissions: {et.rate:,.0f} events/s",
                note=f"{kt.events:,} submissions, peak RSS of the worker "
                f"{kl.peak_mib:,.0f} MiB")  # fmt: skip
    if kl.lags:
        written.add(f"Kafka freshness at {args.rate:g}/s (p99)",
                    percentile(kl.lags, 0.99) * 1000, "ms",
                    anchor=f"the embedded path: p99 {el.lag(0.99)}",
                    note=f"p50 {kl.lag(0.5)}, max {kl.lag(1.0)}")  # fmt: skip
    print(f"figures: {written.write()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check-ins", type=int, default=30_000)
    parser.add_argument("--key-results", type=int, default=100)
    parser.add_argument("--orgs", type=int, default=1, help="Orgs sharing the check-ins.")
    parser.add_argument("--rate", type=float, default=500.0, help="Steady check-ins per second.")
    parser.add_argument(
        "--lag-samples", type=int, default=10_000, help="Check-ins produced at the steady rate."
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--poll-ms", type=float, default=20.0, help="Visibility poll interval.")
    parser.add_argument(
        "--address",
        default=os.environ.get("OKR_BENCH_KAFKA"),
        help="host:port of a broker (default: OKR_BENCH_KAFKA, else start Tansu)",
    )
    parser.add_argument("--keep", type=Path, help="Copy the worker's log to this path.")
    parser.add_argument("--embedded-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    load = Workload.build(args.orgs, args.key_results, args.check_ins, args.lag_samples)
    if args.embedded_child:
        throughput, lag = run_embedded_child(load, args.rate, args.embedded_child)
        print(orjson.dumps({"throughput": throughput.to_json(), "lag": lag.to_json()}).decode())
        return
    with _work_dir() as work:
        kafka = run_kafka(args, load, work)
        embedded = run_embedded(args, work)
    report(args, kafka, embedded)


@contextmanager
def _work_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="okr-bench-e2e-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    main()
