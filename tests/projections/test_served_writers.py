"""The writer's statements at once on several chDB handles (``QueryServer(writers=...)``, as
the store's process of ``okr_ledger/store_host.py`` serves it), and a store that sends an
answer's statements at once to it (``ProjectionStore.served_chdb``): the real server on a real
port, the real store."""

import asyncio
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from okr_ledger.served_store import store_url
from projections import queries
from projections.query_credentials import Credential
from projections.query_server import QueryServer, ReadOnlyEngine, WriterEngine
from projections.readonly_sql import QueryLimits
from projections.store import ONE_THREAD, READERS, ProjectionStore
from tests.kafka.worker_support import free_port

WRITER = Credential("okr_writer", "s3cret-writer", "writer")


@dataclass
class Served:
    """A :class:`QueryServer` with a writer credential, in a thread of this process."""

    data_dir: Path
    writers: int
    port: int = field(default_factory=free_port)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None
    stop: asyncio.Event | None = None
    server: QueryServer | None = None

    def start(self) -> None:
        path = str(self.data_dir / "clickhouse")
        server = self.server = QueryServer(
            ReadOnlyEngine(path, QueryLimits()),
            [WRITER],
            writer=WriterEngine(path),
            writers=self.writers,
        )
        ready = threading.Event()

        async def main() -> None:
            self.stop = asyncio.Event()
            await server.serve("127.0.0.1", self.port, self.stop, lambda _port: ready.set())

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),))
        self.thread.start()
        assert ready.wait(60)

    def close(self) -> None:
        """Stop it (once; again does nothing)."""
        assert self.stop is not None
        assert self.thread is not None
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        self.loop.close()

    @property
    def url(self) -> str:
        return store_url(WRITER, "127.0.0.1", self.port, "okr_ledger")


@pytest.fixture
def demo(demo_dir: Path) -> Path:
    """A copy of the demo's data directory."""
    return demo_dir / "data"


@pytest.fixture
def served(demo: Path) -> Iterator[Served]:
    served = Served(demo, writers=1 + READERS)
    served.start()
    try:
        yield served
    finally:
        served.close()


def _writer_request(served: Served, sql: str) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/?database=okr_ledger",
        data=sql.encode(),
        headers={"X-ClickHouse-User": WRITER.user, "X-ClickHouse-Key": WRITER.password},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: bytes = response.read()
        return answer


def test_a_writers_statement_runs_beside_one_running_on_another_handle(served: Served) -> None:
    """One writer's thread busy (as under a long statement) and the first handle in use: the
    next statement is answered meanwhile, on a handle opened for it, and an insert through it
    is read through the first one; every handle is closed when the server stops. (No timing
    is asserted: the bounds only stop a hang.)"""
    server = served.server
    assert server is not None
    gate = threading.Event()
    server._writer_thread.submit(gate.wait, 120)  # a writer's thread busy
    first = server._idle_writers.get_nowait()  # its handle in use
    try:
        answers: list[bytes] = []
        beside = threading.Thread(
            target=lambda: answers.append(
                _writer_request(
                    served,
                    "INSERT INTO okr_ledger.projection_settings "
                    "VALUES ('bench_probe', 'beside', now64(6))",
                )
            )
        )
        beside.start()
        beside.join(60)
        assert answers == [b""]
        assert not gate.is_set()
        assert len(server._writers) == 2
    finally:
        server._idle_writers.put(first)
        gate.set()
    read = first.run(
        "SELECT value FROM projection_settings WHERE name = 'bench_probe'",
        "TabSeparated",
        {},
        "okr_ledger",
    )
    assert read == (b"beside\n", "TabSeparated")
    handles = list(server._writers)
    served.close()
    assert server._writers == []
    assert all(not handle._spool.exists() for handle in handles)  # closed: spools removed


def test_one_writer_runs_the_writers_statements_in_turn(demo: Path) -> None:
    """``writers=1`` (``serve-store``): one handle, never more."""
    served = Served(demo, writers=1)
    served.start()
    try:
        for _ in range(3):
            assert _writer_request(served, "SELECT 1") == b"1\n"
        assert served.server is not None
        assert len(served.server._writers) == 1
    finally:
        served.close()


def test_a_served_chdb_store_sends_an_answers_statements_at_once(served: Served) -> None:
    """``served_chdb``: ``dicts_together`` sends each statement on a connection of its own
    (up to :data:`READERS` more) and each carries ``ONE_THREAD``; the answers are those the
    statements give in turn."""
    store = ProjectionStore.open(served.url)
    try:
        moment = queries.Moment()
        in_turn = queries.progress(store, "northwind", moment, 3)
        coverage_in_turn = queries.coverage(store, "northwind", moment)
        assert store.readers == []
        store.served_chdb = True
        assert queries._sql(store, "SELECT 1").endswith(ONE_THREAD)
        assert queries.progress(store, "northwind", moment, 3) == in_turn
        assert queries.coverage(store, "northwind", moment) == coverage_in_turn  # 3 at once
        assert len(store.readers) == READERS
        assert store.checkpoints()  # on one thread: a SETTINGS clause the writer runs
    finally:
        store.close()
