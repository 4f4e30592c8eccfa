"""HTTP intake on the embedded runtime: 50 concurrent clients posting check-ins to a real
``okr-ledger serve`` (uvicorn, in its own process), single-event and NDJSON-batch modes.

Prints requests/s, events/s, p50/p99 latency, checks that the ledger holds exactly what was
acknowledged, and beside them the raw anchors of the same run: the ledger's own
``submit_many`` on the same records (no HTTP), and a trivial FastAPI/uvicorn endpoint's
requests/s with the same client.
Usage: python benchmarks/http_intake.py [--seconds 60] [--clients 50] [--batch 200]
"""

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    def line(self, label: str) -> str:
        return (
            f"  {label}: {self.requests / self.seconds:,.0f} requests/s, "
            f"{self.events / self.seconds:,.0f} events/s, p50 {self.percentile(0.5):.1f} ms, "
            f"p99 {self.percentile(0.99):.1f} ms ({self.requests:,} requests, "
            f"{self.failures} failed)"
        )


async def load(
    url: str,
    headers: dict[str, str],
    *,
    body_of: Callable[[int], bytes],
    events_per_request: int,
    clients: int,
    seconds: float,
) -> Run:
    """``clients`` tasks, each posting until ``seconds`` are over."""
    run = Run()
    counter = iter(range(1 << 62))
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                body = body_of(next(counter))
                started = time.perf_counter()
                async with session.post(url, data=body) as answer:
                    payload = await answer.read()
                run.latencies.append(time.perf_counter() - started)
                run.requests += 1
                if answer.status not in (200, 201):
                    run.failures += 1
                    continue
                for line in payload.splitlines():
                    outcome = orjson.loads(line)
                    if outcome.get("status") == "accepted":
                        run.acknowledged.append(outcome["event_id"])
                        run.events += 1
                    elif events_per_request and outcome.get("status") != "accepted":
                        run.failures += 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        run.seconds = time.monotonic() - started
    return run


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


def anchor_submit_many(work: Path, lines: list[bytes]) -> float:
    """The ledger's own ``submit_many`` on the same records, in-process: events/s."""
    log = SqliteEventLog(work / "anchor.db")
    try:
        ledger = Ledger(log)
        list(ledger.submit_many((line, None) for line in setup(ORG, KEY_RESULTS)))
        started = time.perf_counter()
        list(ledger.submit_many((line, None) for line in lines))
        return len(lines) / (time.perf_counter() - started)
    finally:
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="Per mode.")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200, help="Lines per NDJSON request.")
    parser.add_argument("--anchor-seconds", type=float, default=10.0)
    args = parser.parse_args()
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
                [str(cli), "serve", "--port", str(port)], env=env, stdout=out, stderr=out
            )
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        try:
            wait_ready(f"{base}/healthz", server, server_log)
            single = asyncio.run(
                load(f"{base}/v1/submissions", auth,
                     body_of=lambda i: check_in(ORG, i, KEY_RESULTS), events_per_request=0,
                     clients=args.clients, seconds=args.seconds)
            )  # fmt: skip
            offset = 1 << 40

            def batch_body(i: int) -> bytes:
                start = offset + i * args.batch
                return b"\n".join(
                    check_in(ORG, n, KEY_RESULTS) for n in range(start, start + args.batch)
                )

            batched = asyncio.run(
                load(f"{base}/v1/submissions", {**auth, "Content-Type": "application/x-ndjson"},
                     body_of=batch_body, events_per_request=args.batch, clients=args.clients,
                     seconds=args.seconds)
            )  # fmt: skip
        finally:
            stop(server)
        in_ledger = ledger_event_ids(data / "ledger.db")
        acknowledged = set(single.acknowledged) | set(batched.acknowledged)

        trivial_port = free_port()
        trivial = subprocess.Popen(
            [sys.executable, "-c", TRIVIAL_APP.replace("{port}", str(trivial_port))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{trivial_port}/docs", trivial, server_log)
            empty = asyncio.run(
                load(f"http://127.0.0.1:{trivial_port}/v1/submissions", {},
                     body_of=lambda i: check_in(ORG, i, KEY_RESULTS), events_per_request=0,
                     clients=args.clients, seconds=args.anchor_seconds)
            )  # fmt: skip
        finally:
            stop(trivial)
        same = [check_in(ORG, offset + n, KEY_RESULTS) for n in range(min(batched.events, 200_000))]
        ledger_rate = anchor_submit_many(work, same)

    print(f"HTTP intake, embedded runtime: {args.clients} clients, {args.seconds:.0f} s per mode")
    print(single.line("single event"))
    print(batched.line(f"NDJSON batches of {args.batch}"))
    exact = in_ledger == acknowledged
    print(
        f"  ledger check: {len(in_ledger):,} check-ins in the ledger, {len(acknowledged):,} "
        f"acknowledged: {'exactly the same' if exact else 'DIFFERENT'}"
    )
    print("raw anchors of this run:")
    print(f"  ledger submit_many, same records, in-process: {ledger_rate:,.0f} events/s")
    print(
        f"  trivial FastAPI/uvicorn endpoint, same client: {empty.requests / empty.seconds:,.0f} "
        f"requests/s, p50 {empty.percentile(0.5):.1f} ms, p99 {empty.percentile(0.99):.1f} ms"
    )
    if not exact:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
