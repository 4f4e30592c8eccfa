"""``okr-ledger serve`` as a real subprocess, and what the HTTP tests share."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from okr_ledger.http.keys import Scope, new_key
from okr_ledger.settings import Settings
from okr_ledger.wiring import bootstrap
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.projector_support import cli
from tests.kafka.worker_support import free_port

__all__ = ["cli", "free_port"]

HOOKS = Path(__file__).parent / "fixtures" / "hooks.toml"
JIRA_PAYLOAD = Path(__file__).parent / "fixtures" / "jira_issue_updated.json"


class Server:
    """``okr-ledger serve`` on a free port with ``env`` (OKR_* settings)."""

    def __init__(self, env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.host, self.port = host, free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from okr_ledger.cli import main; main()",
                    "serve",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None
            assert self.process.poll() is None, f"the server exited:\n{self.log_tail()}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not start:\n{self.log_tail()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


@contextmanager
def running(env: dict[str, str], log_path: Path, host: str = "127.0.0.1") -> Iterator[Server]:
    server = Server(env, log_path, host)
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def make_key(
    settings: Settings,
    *,
    orgs: tuple[str, ...] = ("northwind",),
    source: str | None = "jira",
    scopes: tuple[Scope, ...] = (Scope.WRITE,),
    types: tuple[str, ...] | None = None,
) -> tuple[str, str]:
    """A key stored where the server reads them: (key, its id)."""
    token, record = new_key(scopes=scopes, orgs=orgs, source=source, types=types)
    store = bootstrap(settings).key_store()
    try:
        store.add(record)
    finally:
        store.close()
    return token, record.key_id


def check_in(
    key_result_id: str = "nps",
    value: float = 43,
    *,
    org_id: str = "northwind",
    source: str = "jira",
    type_name: str = "CheckInRecorded",
    source_event_id: str | None = "c1",
    occurred_at: str = "2026-11-20T10:00:00Z",
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": type_name,
        "org_id": org_id,
        "occurred_at": occurred_at,
        "actor": "mia@northwind.example",
        "source": source,
        "data": {"key_result_id": key_result_id, "value": value, "confidence": 0.8},
    }
    if source_event_id is not None:
        document["source_event_id"] = source_event_id
    return document


def ndjson(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def outcome_lines(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def kafka_settings(env: dict[str, str], topics: dict[str, str]) -> Settings:
    """The settings of a test's Kafka runtime (``env``: a worker's ``OKR_*`` variables with
    ``OKR_KAFKA_TOPIC_KEYS``), for the keys the test makes."""
    return Settings(
        ledger_url=env["OKR_LEDGER_URL"],
        data_dir=Path(env["OKR_DATA_DIR"]),
        kafka_topic_intake=topics["intake"],
        kafka_topic_ledger=topics["ledger"],
        kafka_topic_rejections=topics["rejections"],
        kafka_topic_outcomes=topics["outcomes"],
        kafka_topic_keys=env["OKR_KAFKA_TOPIC_KEYS"],
        kafka_partitions=TEST_PARTITIONS,
    )


def kafka_server_env(
    worker_env: dict[str, str], topics: dict[str, str], **extra: str
) -> dict[str, str]:
    """A server's ``OKR_*`` settings beside a test's Kafka worker (its own, and the keys
    topic; no rate limit; keys re-read every 0.2 s), with ``extra``."""
    env = {k: v for k, v in worker_env.items() if k.startswith("OKR_")}
    return env | {
        "OKR_KAFKA_TOPIC_KEYS": f"{topics['intake']}.keys",
        "OKR_KAFKA_PARTITIONS": str(TEST_PARTITIONS),
        "OKR_HTTP_RATE_LIMIT": "",
        "OKR_HTTP_KEY_REFRESH_SECONDS": "0.2",
        **extra,
    }
