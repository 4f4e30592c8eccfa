"""An embedded ledger with the demo organisation, served by a real ``okr-ledger serve``."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from events.ledger import Ledger
from events.outcomes import Rejection
from events.sqlite_log import SqliteEventLog
from okr_ledger.demo import demo_submissions
from okr_ledger.http.keys import Scope
from okr_ledger.settings import Settings
from tests.http.support import HOOKS, Server, make_key, running
from tests.kafka.conftest import kafka, kafka_address, topics

__all__ = ["kafka", "kafka_address", "topics"]  # the broker fixtures, for the Kafka HTTP tests


@dataclass
class Served:
    """A running server on a demo ledger, and keys for it."""

    server: Server
    settings: Settings
    env: dict[str, str]
    writer: str
    """Source ``jira``, org ``northwind``, any type."""
    reader: str
    """Read scope for ``northwind``."""

    def key(self, **kwargs: Any) -> str:
        return make_key(self.settings, **kwargs)[0]

    def ledger(self) -> SqliteEventLog:
        """The server's ledger, opened read-only (the caller closes it)."""
        return SqliteEventLog(self.settings.data_dir / "ledger.db", read_only=True)

    def rejections(self) -> list[Rejection]:
        """The ledger's rejection log, read now."""
        log = self.ledger()
        try:
            return list(log.rejections())
        finally:
            log.close()


def demo_ledger(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = SqliteEventLog(data_dir / "ledger.db")
    try:
        list(Ledger(log).submit_many((raw, None) for raw in demo_submissions()))
    finally:
        log.close()


@contextmanager
def serving_the_demo(
    tmp: Path, idle_s: float, extra_env: dict[str, str] | None = None
) -> Iterator[Served]:
    """A server on a fresh demo ledger under ``tmp``, keeping its store open ``idle_s``
    seconds after a read (``OKR_HTTP_STORE_IDLE_SECONDS``), and keys for it; ``extra_env``:
    more settings."""
    data_dir = tmp / "data"
    demo_ledger(data_dir)
    env = {
        "OKR_DATA_DIR": str(data_dir),
        "OKR_HTTP_HOOKS_FILE": str(HOOKS),
        "OKR_HTTP_RATE_LIMIT": "",
        "OKR_HTTP_STORE_IDLE_SECONDS": str(idle_s),
        **(extra_env or {}),
    }
    settings = Settings(data_dir=data_dir)
    writer, _ = make_key(settings)
    reader, _ = make_key(settings, source=None, scopes=(Scope.READ,))
    with running(env, tmp / "server.log") as server:
        yield Served(server, settings, env, writer, reader)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # The tests compare answers with the CLI's, run in processes of their own, which can open
    # the store only while the server does not hold it: closed after every read
    # (test_kept_store.py tests the server that keeps it).
    with serving_the_demo(tmp_path_factory.mktemp("served"), idle_s=0) as served:
        yield served
