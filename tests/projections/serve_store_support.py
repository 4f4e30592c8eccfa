"""``okr-ledger serve-store`` as a real process, for the tests of every area that shares a store."""

import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLI = [sys.executable, "-c", "from okr_ledger.cli import main; main()"]
START_TIMEOUT_S = 60.0


@dataclass
class ServedStore:
    """A running ``serve-store``: its process, the writer URL it printed, its settings."""

    process: "subprocess.Popen[str]"
    writer_url: str
    env: dict[str, str]
    host: str
    port: int

    def reader_url(self) -> str:
        """As a BI user gets it: ``serve-store --print-reader-url``."""
        where = ["--host", self.host, "--port", str(self.port)]
        done = subprocess.run(
            [*CLI, "serve-store", "--print-reader-url", *where],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def start_store(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> ServedStore:
    """Start ``serve-store --port 0`` on ``data_dir`` and wait for the URL it prints first."""
    full_env = {**os.environ, "OKR_DATA_DIR": str(data_dir), **(env or {})}
    full_env.pop("OKR_CLICKHOUSE_URL", None)
    process = subprocess.Popen(
        [*CLI, "serve-store", "--port", "0", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=(data_dir.parent / f"{data_dir.name}-serve-store.log").open("w"),
        text=True,
    )
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline().strip()))
    reader.start()
    reader.join(START_TIMEOUT_S)
    first = lines[0] if lines else ""
    if not first.startswith("http://"):
        process.kill()
        log = (data_dir.parent / f"{data_dir.name}-serve-store.log").read_text()
        raise AssertionError(f"serve-store printed {first!r} first; its log:\n{log}")
    host_port = first.rpartition("@")[2].partition("/")[0]
    host, _, port = host_port.rpartition(":")
    return ServedStore(process, first, full_env, host, int(port))


@contextmanager
def served_store(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServedStore]:
    store = start_store(data_dir, *args, env=env)
    try:
        yield store
    finally:
        store.stop()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST ``body`` to a served store (or an endpoint): the status and the text answered."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
