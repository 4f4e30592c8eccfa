"""HTTP intake on the embedded runtime: 50 concurrent clients posting check-ins to a real
``okr-ledger serve`` (uvicorn, in its own process), single-event and NDJSON-batch modes.

Prints requests/s, events/s, p50/p99 latency, checks that the ledger holds exactly what was
acknowledged, and beside them the raw anchors of the same run: the ledger's own
``submit_many`` on the same records (no HTTP; events/s and CPU µs/event), and a trivial
FastAPI/uvicorn endpoint with the same client, sent single events and the same NDJSON bodies
(requests/s; CPU µs per line: the floor of HTTP's own cost).

The load generator shares the machine with the server, so it is kept cheap: every request
body is built before the timed phase (``--ceiling`` sizes the stock; a body built during the
phase is counted and printed), and the answers are only kept during it, parsed after. Each
figure is printed with the CPU seconds the client process and the server process spent in
that phase (the server's also per event, split between its event loop and the group-commit
writer thread), the 1-minute load average at its end, and the writer's group sizes (from
``/metrics``), so a reader sees where the time went whatever else the machine ran.
``--server-workers N`` runs ``serve --workers N`` (N processes on one socket): the server's CPU
is then that of every process of it (the supervisor's and its helper's shown apart).
``--profile FILE`` records the server with py-spy (raw collapsed stacks; extra options in
``PY_SPY_OPTIONS``) during the batch phase. Figures go to benchmarks/.work/figures/http.json
(``benchmarks/summary.py``).
Usage: python benchmarks/http_intake.py [--seconds 60] [--clients 50] [--batch 200]
       [--modes single,batch] [--anchor-seconds 10] [--anchor-events 200000] [--profile FILE]
       [--server-workers 1]
"""

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures, at_least, children, cpu_times, tasks
from benchmarks.phases import Phases
from benchmarks.workload import check_in, setup
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from okr_ledger.http.key_stores import KEYS_FILE, SqliteKeyStore
from okr_ledger.http.keys import Scope, new_key

ORG, KEY_RESULTS = "acme", 100
TRIVIAL_APP = """
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse
app = FastAPI()
@app.post("/v1/submissions")
async def submit(request: Request):
    await request.body()
    return ORJSONResponse({"status": "ok"}, status_code=201)
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Run:
    """What one load phase measured."""

    seconds: float = 0.0
    requests: int = 0
    events: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    """Event ids the server answered as accepted."""
    client_cpu: float = 0.0
    """CPU seconds of this (the load generator's) process during the timed phase."""
    server_cpu: float | None = None
    server_system: float = 0.0
    """Of which in the kernel (system time)."""
    """CPU seconds of the server process during the timed phase (Linux /proc)."""
    load_average: float = 0.0
    """The machine's 1-minute load average at the end of the phase."""
    built_late: int = 0
    """Bodies the stock did not hold, built during the timed phase."""
    threads: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each server thread during the phase, by thread name."""
    grouped: tuple[float, float] | None = None
    """Groups the server's writer committed during the phase, and submissions in them."""

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    def line(self, label: str) -> str:
        return (
            f"  {label}: {self.requests / self.seconds:,.0f} requests/s, "
            f"{self.events / self.seconds:,.0f} events/s, p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms ({self.requests:,} requests, "
            f"{self.failures} failed)\n      {self.split()}"
        )

    def split(self) -> str:
        server = "?"
        if self.server_cpu is not None:
            server = f"{self.server_cpu:.1f} s"
            if self.events:
                per_event = self.server_cpu / self.events * 1e6
                system = self.server_system / self.events * 1e6
                server += f" ({per_event:.0f} µs/event, {system:.0f} system)"
        if self.threads and self.events:
            server += (
                " = "
                + ", ".join(
                    f"{name} {cpu / self.events * 1e6:.0f}"
                    for name, cpu in sorted(self.threads.items(), key=lambda t: -t[1])
                    if cpu >= 0.05
                )
                + " µs/event"
            )
        late = f", {self.built_late:,} bodies built in the phase" if self.built_late else ""
        if self.grouped and self.grouped[0]:
            count, size = self.grouped
            late += f"; {count:,.0f} groups committed, {size / count:,.0f} submissions each"
        return (
            f"CPU in {self.seconds:.1f} s: client {self.client_cpu:.1f} s, server {server}; "
            f"load average {self.load_average:.2f} (2 cores shared){late}"
        )


def server_processes(pid: int) -> dict[int, bool]:
    """The processes of the server ``pid``: it and its children (``serve --workers N``: the
    supervisor, its workers and multiprocessing's resource tracker), each with whether it
    serves (a worker, or the one process of a server without workers); on Linux."""
    found = {pid: True}
    for child in children(pid):
        found[pid] = False  # a supervisor
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        found[child] = b"resource_tracker" not in command
    return found


def thread_cpu(processes: dict[int, bool]) -> dict[str, float]:
    """CPU seconds so far of the main thread of each serving process (the server's event
    loop), of their other threads (the group-commit writer), and of the processes that do
    not serve (the supervisor of several workers, its helper), on Linux."""
    seconds = {"loop": 0.0, "writer": 0.0, "supervisor": 0.0}
    for pid, serves in processes.items():
        for task in tasks(pid):
            times = cpu_times(task / "stat")
            if times is None:  # the thread ended
                continue
            main = task.name == str(pid)
            seconds["supervisor" if not serves else "loop" if main else "writer"] += sum(times)
    return seconds


def process_cpu(processes: dict[int, bool]) -> tuple[float, float] | None:
    """CPU seconds (user + system, all threads) of ``processes`` so far, and of them the
    system seconds; None off Linux."""
    total = system = 0.0
    for pid in processes:
        times = cpu_times(Path(f"/proc/{pid}/stat"))
        if times is None:
            return None
        total += sum(times)
        system += times[1]
    return total, system


async def load(
    url: str,
    headers: dict[str, str],
    *,
    bodies: list[bytes],
    body_of: Callable[[int], bytes],
    events_per_request: int,
    clients: int,
    seconds: float,
    server_pid: int | None = None,
    cycle: bool = False,
) -> Run:
    """``clients`` tasks, each posting the next body of ``bodies`` (built beforehand; past
    its end ``body_of(i)`` builds one, or with ``cycle`` the stock is sent again) until
    ``seconds`` are over. The answers are parsed
    after the timed phase."""
    run = Run()
    counter = iter(range(1 << 62))
    answers: list[tuple[int, bytes]] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                i = next(counter)
                if i < len(bodies) or cycle:
                    body = bodies[i % len(bodies)]
                else:
                    body = body_of(i)
                    run.built_late += 1
                started = time.perf_counter()
                async with session.post(url, data=body) as answer:
                    payload = await answer.read()
                run.latencies.append(time.perf_counter() - started)
                answers.append((answer.status, payload))

        processes = server_processes(server_pid) if server_pid else {}
        server_cpu = process_cpu(processes) if processes else None
        threads = thread_cpu(processes) if processes else {}
        client_cpu = time.process_time()
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client() for _ in range(clients)))
        run.seconds = time.monotonic() - started
        run.client_cpu = time.process_time() - client_cpu
        if server_cpu is not None and processes:
            total, system = process_cpu(processes) or server_cpu
            run.server_cpu, run.server_system = total - server_cpu[0], system - server_cpu[1]
            run.threads = {
                name: cpu - threads.get(name, 0.0) for name, cpu in thread_cpu(processes).items()
            }
        run.load_average = os.getloadavg()[0]
    for status, payload in answers:
        run.requests += 1
        if status not in (200, 201):
            run.failures += 1
            continue
        for line in payload.splitlines():
            outcome = orjson.loads(line)
            if outcome.get("status") == "accepted":
                run.acknowledged.append(outcome["event_id"])
                run.events += 1
            elif events_per_request:
                run.failures += 1
    return run


@contextmanager
def profiling(pid: int, out: Path | None, seconds: float) -> Iterator[None]:
    """py-spy recording process ``pid`` and its children (raw collapsed stacks into ``out``)
    meanwhile."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(spy).exists():
        if out is not None:
            print("py-spy is not installed: no profile", file=sys.stderr)
        yield
        return
    recorder = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200", "--format",
         "raw", "--nonblocking", "--subprocesses",
         *os.environ.get("PY_SPY_OPTIONS", "").split(), "-o", str(out)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        recorder.wait()


def groups(base: str) -> tuple[float, float]:
    """The server's group-commit histogram so far (``/metrics``): groups, and submissions."""
    import urllib.request

    text = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    figures = dict(
        line.rsplit(" ", 1)
        for line in text.splitlines()
        if line.startswith("okr_http_group_commit_size_")
    )
    return float(figures["okr_http_group_commit_size_count"]), float(
        figures["okr_http_group_commit_size_sum"]
    )


def wait_ready(url: str, process: "subprocess.Popen[bytes]", log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def stop(process: "subprocess.Popen[bytes]") -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def ledger_event_ids(path: Path) -> set[str]:
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT event_id FROM events WHERE type = ?",
                                             ("CheckInRecorded",))}  # fmt: skip
    finally:
        db.close()


def anchor_submit_many(work: Path, lines: list[bytes]) -> tuple[float, float, float, float]:
    """The ledger's own ``submit_many`` on the same records, in-process: events/s, CPU
    seconds per event (of them system seconds), and the load average at its end."""
    log = SqliteEventLog(work / "anchor.db")
    try:
        ledger = Ledger(log)
        list(ledger.submit_many((line, None) for line in setup(ORG, KEY_RESULTS)))
        started, cpu = time.perf_counter(), os.times()
        list(ledger.submit_many((line, None) for line in lines))
        rate = len(lines) / (time.perf_counter() - started)
        used = os.times()
        user, system = used.user - cpu.user, used.system - cpu.system
        return rate, (user + system) / len(lines), system / len(lines), os.getloadavg()[0]
    finally:
        log.close()


def stock(make: Callable[[int], bytes], count: int) -> list[bytes]:
    """``count`` request bodies, built before a timed phase."""
    return [make(i) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="Per mode.")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200, help="Lines per NDJSON request.")
    parser.add_argument("--anchor-seconds", type=float, default=10.0,
                        help="Per phase of the trivial endpoint.")  # fmt: skip
    parser.add_argument("--anchor-events", type=int, default=200_000,
                        help="submit_many anchor: at most this many records.")  # fmt: skip
    parser.add_argument("--modes", default="single,batch", help="single, batch or both.")
    parser.add_argument(
        "--ceiling", type=float, default=40_000.0,
        help="Events/s the stock of prebuilt bodies is sized for (per mode).",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the batch phase.")
    parser.add_argument("--server-workers", type=int, default=1,
                        help="Processes of the server (serve --workers).")  # fmt: skip
    args = parser.parse_args()
    modes = set(args.modes.split(","))
    stocked = int(args.seconds * args.ceiling)
    offset = 1 << 40

    def single_body(i: int) -> bytes:
        return check_in(ORG, i, KEY_RESULTS)

    def batch_body(i: int) -> bytes:
        start = offset + i * args.batch
        return b"\n".join(check_in(ORG, n, KEY_RESULTS) for n in range(start, start + args.batch))

    phases = Phases()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        log = SqliteEventLog(data / "ledger.db")
        list(Ledger(log).submit_many((line, None) for line in setup(ORG, KEY_RESULTS)))
        log.close()
        token, record = new_key(scopes=(Scope.WRITE,), orgs=(ORG,), source="tests")
        store = SqliteKeyStore(data / KEYS_FILE)
        store.add(record)
        store.close()

        port = free_port()
        env = {**os.environ, "OKR_DATA_DIR": str(data), "OKR_HTTP_RATE_LIMIT": "",
               "OKR_LOG_LEVEL": "WARNING"}  # fmt: skip
        server_log = work / "server.log"
        cli = Path(sys.executable).parent / "okr-ledger"
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [str(cli), "serve", "--port", str(port), "--workers", str(args.server_workers)],
                env=env,
                stdout=out,
                stderr=out,
            )
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        single = batched = Run()
        try:
            wait_ready(f"{base}/healthz", server, server_log)
            phases.done("set-up, server start")
            if "single" in modes:
                bodies = stock(single_body, stocked // 10)  # requests of one event: ~1/10
                phases.done("single-event bodies built")
                single = asyncio.run(
                    load(f"{base}/v1/submissions", auth, bodies=bodies, body_of=single_body,
                         events_per_request=0, clients=args.clients, seconds=args.seconds,
                         server_pid=server.pid)
                )  # fmt: skip
                phases.done("single-event phase")
            if "batch" in modes:
                bodies = stock(batch_body, stocked // args.batch)
                phases.done("batch bodies built")
                before = groups(base)
                with profiling(server.pid, args.profile, args.seconds):
                    batched = asyncio.run(
                        load(f"{base}/v1/submissions",
                             {**auth, "Content-Type": "application/x-ndjson"}, bodies=bodies,
                             body_of=batch_body, events_per_request=args.batch,
                             clients=args.clients, seconds=args.seconds, server_pid=server.pid)
                    )  # fmt: skip
                after = groups(base)
                batched.grouped = (after[0] - before[0], after[1] - before[1])
                phases.done("batch phase")
            bodies = []
        finally:
            stop(server)
        in_ledger = ledger_event_ids(data / "ledger.db")
        phases.done("server stop, ledger read")
        acknowledged = set(single.acknowledged) | set(batched.acknowledged)

        trivial_port = free_port()
        trivial = subprocess.Popen(
            [sys.executable, "-c", TRIVIAL_APP.replace("{port}", str(trivial_port))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{trivial_port}/docs", trivial, server_log)
            # It keeps nothing: a stock of bodies is sent round and round.
            bodies = stock(single_body, 10_000)
            empty = asyncio.run(
                load(f"http://127.0.0.1:{trivial_port}/v1/submissions", {}, bodies=bodies,
                     cycle=True, body_of=single_body, events_per_request=0, clients=args.clients,
                     seconds=args.anchor_seconds, server_pid=trivial.pid)
            )  # fmt: skip
            bodies = stock(batch_body, 100)
            empty_batches = asyncio.run(
                load(f"http://127.0.0.1:{trivial_port}/v1/submissions",
                     {"Content-Type": "application/x-ndjson"}, bodies=bodies, cycle=True,
                     body_of=batch_body, events_per_request=0, clients=args.clients,
                     seconds=args.anchor_seconds, server_pid=trivial.pid)
            )  # fmt: skip
            bodies = []
        finally:
            stop(trivial)
        phases.done("trivial endpoint anchors")
        most = args.anchor_events
        same = [check_in(ORG, offset + n, KEY_RESULTS) for n in range(min(batched.events, most))]
        if not same:  # no batch phase: the single-event records
            same = [single_body(i) for i in range(min(single.requests, most))]
        ledger_rate, ledger_cpu, ledger_system, ledger_load = anchor_submit_many(work, same)
        phases.done("submit_many anchor")

    print(
        f"HTTP intake, embedded runtime: {args.clients} clients, {args.seconds:.0f} s per mode, "
        f"{args.server_workers} server worker process{'es' if args.server_workers > 1 else ''}"
    )
    if "single" in modes:
        print(single.line("single event"))
    if "batch" in modes:
        print(batched.line(f"NDJSON batches of {args.batch}"))
    exact = in_ledger == acknowledged
    print(
        f"  ledger check: {len(in_ledger):,} check-ins in the ledger, {len(acknowledged):,} "
        f"acknowledged: {'exactly the same' if exact else 'DIFFERENT'}"
    )
    print("raw anchors of this run:")
    print(
        f"  ledger submit_many, same {len(same):,} records, in-process: {ledger_rate:,.0f} "
        f"events/s, CPU {ledger_cpu * 1e6:.0f} µs/event ({ledger_system * 1e6:.0f} system; "
        f"load average {ledger_load:.2f})"
    )
    print(
        f"  trivial FastAPI/uvicorn endpoint, same client: {empty.requests / empty.seconds:,.0f} "
        f"requests/s, p50 {empty.percentile(0.5):.1f} ms, p99 {empty.percentile(0.99):.1f} ms"
        f"\n      {empty.split()}"
    )
    lines = empty_batches.requests * args.batch
    per_line = (empty_batches.server_cpu or 0.0) / max(lines, 1) * 1e6
    print(
        f"  the same endpoint, the NDJSON bodies of {args.batch}: "
        f"{empty_batches.requests / empty_batches.seconds:,.0f} requests/s "
        f"({lines / empty_batches.seconds:,.0f} lines/s), server CPU {per_line:.1f} µs/line"
        f"\n      {empty_batches.split()}"
    )
    print(phases.line())
    write_figures(args, modes, (single, batched, empty), exact, ledger_rate)
    if not exact:
        raise SystemExit(1)


def write_figures(
    args: argparse.Namespace,
    modes: set[str],
    runs: tuple[Run, Run, Run],
    exact: bool,
    ledger_rate: float,
) -> None:
    """The targets of issue 10, for ``benchmarks/summary.py``."""
    single, batched, empty = runs
    figures = Figures(
        "http",
        f"HTTP intake: {args.clients} clients, {args.seconds:.0f} s a mode, "
        f"serve --workers {args.server_workers}",
    )
    checked = "the ledger holds exactly what was acknowledged" if exact else "ledger DIFFERENT"
    checked += f"; serve --workers {args.server_workers}"
    if "single" in modes:
        rate = single.requests / single.seconds
        figures.add("HTTP, single-event requests", rate, "requests/s",
                    at_least(rate, 2000) if exact else (">= 2000", False),
                    anchor=f"a trivial FastAPI endpoint, same client: "
                    f"{empty.requests / empty.seconds:,.0f} requests/s",
                    note=f"p50 {single.percentile(0.5):.1f} ms, p99 "
                    f"{single.percentile(0.99):.1f} ms; {checked}")  # fmt: skip
    if "batch" in modes:
        rate = batched.events / batched.seconds
        figures.add(f"HTTP, NDJSON batches of {args.batch}", rate, "events/s",
                    at_least(rate, 30_000) if exact else (">= 30000", False),
                    anchor=f"the ledger's submit_many, same records, in process: "
                    f"{ledger_rate:,.0f} events/s",
                    note=f"p50 {batched.percentile(0.5):.1f} ms, p99 "
                    f"{batched.percentile(0.99):.1f} ms; {checked}")  # fmt: skip
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
