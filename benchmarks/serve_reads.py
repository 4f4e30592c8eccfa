"""Reads of a real ``okr-ledger serve`` on the embedded runtime: ``GET
/v1/orgs/{org}/progress`` (nothing new) over HTTP, with one server process and with
``--workers 2``, and the memory and threads of the server and of its store's process
(``okr_ledger/store_host.py``).

Each round starts the server anew, one read to open the store, then ``--reads`` reads, the
two shapes alternated round by round; after the reads, each process's RSS and threads
(``/proc``): the server's (its workers too) and the store's process (the one holding the
store). Beside them, the raw anchor of the same run: the same read on chDB alone in a fresh
process (``kept_read_latency.py``'s, the store opened in-process).
Figures go to benchmarks/.work/figures/serve_reads.json (``benchmarks/summary.py``).
Usage: python benchmarks/serve_reads.py [--rounds 4] [--reads 30]
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.figures import Figures
from benchmarks.kept_read_latency import ORG, demo

CLI = [sys.executable, "-c", "from okr_ledger.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def processes_of(pid: int) -> list[int]:
    """``pid`` and the processes it started, and theirs (Linux: /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, parents = [pid], [pid]
    while parents:
        parents = [child for parent in parents for child in children.get(parent, [])]
        found += parents
    return found


def status(pid: int) -> tuple[float, int, bytes]:
    """RSS (MiB), threads and command line of ``pid``."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]), command


def one_round(env: dict[str, str], workers: int, reads: int, key: str) -> dict[str, float]:
    """Start the server, read, measure; stop it. Read times in ms, memory in MiB."""
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/orgs/{ORG}/progress"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(headers=headers, timeout=60) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if http.get(url).status_code == 200:  # the store opened, the demo projected
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
            times = []
            for _ in range(reads):
                start = time.perf_counter()
                answer = http.get(url)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, answer.text
        measured = {"p50": statistics.median(times), "p90": sorted(times)[int(reads * 0.9)]}
        for pid in processes_of(server.pid):
            try:
                rss, threads, command = status(pid)
            except OSError:
                continue
            part = "store" if b"okr_ledger.store_host" in command else "server"
            measured[f"{part} rss"] = measured.get(f"{part} rss", 0.0) + rss
            measured[f"{part} threads"] = measured.get(f"{part} threads", 0) + threads
        return measured
    finally:
        server.terminate()
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reads", type=int, default=30)
    args = parser.parse_args()
    figures = Figures("serve_reads", "Reads of a real serve (embedded runtime, demo ledger)")
    print(f"load average {os.getloadavg()}", flush=True)
    found: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="okr-serve-reads-") as directory:
        data = Path(directory) / "data"
        demo(data)
        env = {**os.environ, "OKR_DATA_DIR": str(data), "OKR_HTTP_RATE_LIMIT": ""}
        made = subprocess.run(
            [*CLI, "keys", "create", "--scope", "read", "--org", ORG, "--json"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = orjson.loads(made.stdout)["key"]
        for n in range(args.rounds):
            for workers in (1, 2) if n % 2 == 0 else (2, 1):
                found[workers].append(one_round(env, workers, args.reads, key))
        kept = Path(__file__).with_name("kept_read_latency.py")
        done = subprocess.run(
            [sys.executable, str(kept), "--alone", str(data), "--reads", str(args.reads),
             "--rounds", str(args.rounds)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        alone = orjson.loads(done.stdout.splitlines()[-1])
    anchor = f"chDB alone, in-process: the same read {alone['read']:.1f} ms (p50)"
    for workers, rounds in found.items():
        shape = "one process" if workers == 1 else f"--workers {workers}"

        def median(name: str, rounds: list[dict[str, float]] = rounds) -> float:
            return statistics.median(r[name] for r in rounds)

        spread = ", ".join(f"{r['p50']:.1f}" for r in rounds)
        figures.add(f"progress over HTTP, {shape} (p50)", median("p50"), "ms", anchor=anchor,
                    note=f"rounds' p50 {spread} ms; p90 {median('p90'):.1f} ms")  # fmt: skip
        for part in ("server", "store"):
            figures.add(f"{part} processes' RSS after the reads, {shape}", median(f"{part} rss"),
                        "MiB", anchor=anchor,
                        note=f"threads {median(f'{part} threads'):.0f}")  # fmt: skip
    print(f"load average {os.getloadavg()}", flush=True)
    print(f"figures: {figures.write()}")


if __name__ == "__main__":
    main()
