"""The query endpoint: the real server on a real port, spoken to as clients and browsers do."""

import asyncio
import base64
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from typer.testing import CliRunner

from okr_ledger.cli import app
from projections.client import CHDB_SESSION
from projections.query_credentials import Credential
from projections.query_server import QueryServer, ReadOnlyEngine, WriterEngine
from projections.readonly_sql import (
    ACCEPTED_KEPT,
    ACCEPTED_KEPT_CHARS,
    QueryLimits,
    ReadOnlyGuard,
)
from projections.store import ProjectionStore
from schemas.errors import ProjectionQueryError, QueryRefusedError
from tests.kafka.worker_support import free_port
from tests.projections.readonly_support import data_state, sql_of
from tests.projections.sql_escapes import ESCAPES

READER = Credential("reader", "s3cret-token")
BASIC = "Basic " + base64.b64encode(b"reader:s3cret-token").decode()


@dataclass
class Served:
    """A :class:`QueryServer` running in a thread of this process, on a real port."""

    data_dir: Path
    port: int
    limits: QueryLimits
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    stop: asyncio.Event | None = None
    server: QueryServer | None = None

    def start(self) -> None:
        engine = ReadOnlyEngine(str(self.data_dir / "clickhouse"), self.limits)
        server = self.server = QueryServer(engine, [READER])
        ready = threading.Event()

        async def main() -> None:
            self.stop = asyncio.Event()
            ready.set()
            await server.serve("127.0.0.1", self.port, self.stop)

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),))
        self.thread.start()
        assert ready.wait(10)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.url}/ping", timeout=1).read()
                break
            except OSError:
                threading.Event().wait(0.05)

    def close(self) -> None:
        assert self.stop is not None
        assert self.thread is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, password: str = READER.password) -> Any:
        return clickhouse_connect.get_client(
            host="127.0.0.1", port=self.port, username="reader", password=password
        )


def serve(data_dir: Path, limits: QueryLimits | None = None) -> Iterator[Served]:
    served = Served(data_dir, free_port(), limits or QueryLimits())
    served.start()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    return tmp_path / "data"


@pytest.fixture
def served(demo: Path) -> Iterator[Served]:
    yield from serve(demo)


def http(
    served: Served,
    sql: str | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Status and body of one raw request (the statement in the body, or ``query=``)."""
    query = dict(params or {})
    if method == "GET" and sql is not None:
        query["query"] = sql
    url = f"{served.url}/?{urllib.parse.urlencode(query)}"
    body = sql.encode() if method == "POST" and sql is not None else None
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_every_escape_is_refused_by_the_endpoint_and_nothing_changes(served: Served) -> None:
    with ProjectionStore.open(f"chdb://{served.data_dir / 'clickhouse'}", migrate=False) as store:
        before = data_state(served.data_dir, store)
        client = served.client()
        ran = []
        for escape in ESCAPES:
            sql = sql_of(escape, served.data_dir)
            try:
                client.query(sql)
                ran.append(f"clickhouse-connect ran {escape!r}")
            except DatabaseError:
                pass
            for method in ("POST", "GET"):
                status, text = http(served, sql, method=method, headers={"Authorization": BASIC})
                if status not in (403, 500) or not text.startswith("Code: "):
                    ran.append(f"{method} {escape!r}: {status} {text!r}")
        assert ran == [], "\n".join(ran)
        assert data_state(served.data_dir, store) == before


def test_the_issues_attempts_get_403_with_the_reason(served: Served) -> None:
    outfile = f"SELECT 'gone' INTO OUTFILE '{served.data_dir}/ledger.db' TRUNCATE"
    for method in ("POST", "GET"):
        status, text = http(served, outfile, method=method, headers={"Authorization": BASIC})
        assert (status, text) == (
            403,
            "Code: 164. DB::Exception: INTO OUTFILE is not allowed in read-only SQL. (READONLY)\n",
        )
    status, text = http(
        served,
        "SELECT 1; DROP TABLE okr_ledger.checkpoints; SELECT 1",
        headers={"X-ClickHouse-User": "reader", "X-ClickHouse-Key": READER.password},
    )
    assert status == 403
    assert "more than one statement is not allowed" in text


def test_browsers_and_strangers_run_nothing(served: Served) -> None:
    outfile = f"SELECT 'gone' INTO OUTFILE '{served.data_dir}/ledger.db' TRUNCATE"
    harmless = "SELECT 1"
    cross_site = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
    assert http(served, outfile, headers=cross_site)[0] == 403
    assert http(served, harmless, headers={**cross_site, "Authorization": BASIC})[0] == 403
    fetch_site = {"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}
    assert http(served, outfile, headers=fetch_site)[0] == 403
    same_site = {"Sec-Fetch-Site": "same-site", "Authorization": BASIC}
    assert http(served, harmless, headers=same_site)[0] == 403
    status, text = http(served, harmless, headers={"Content-Type": "text/plain"})
    assert status == 401
    assert text.startswith("Code: 516. DB::Exception: authentication failed")
    assert http(served, harmless, method="GET")[0] == 401
    wrong = "Basic " + base64.b64encode(b"reader:guess").decode()
    assert http(served, harmless, headers={"Authorization": wrong})[0] == 401
    assert http(served, harmless, headers={"Authorization": "Basic !!!"})[0] == 401
    other_user = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": READER.password}
    assert http(served, harmless, headers=other_user)[0] == 401
    rebinding = {"Host": "evil.example", "Authorization": BASIC}
    assert http(served, harmless, headers=rebinding)[0] == 403
    with pytest.raises(DatabaseError, match="516"):
        served.client(password="guess")
    assert http(served, harmless, headers={"Authorization": BASIC}) == (200, "1\n")


def test_a_credential_that_is_not_utf8_is_refused_not_a_500(served: Served) -> None:
    """Header bytes that are not UTF-8 (``http.client`` sends ``str`` headers as Latin-1):
    aiohttp decodes them with surrogates, which compared as a credential raised."""
    for headers in (
        {"X-ClickHouse-User": "\xff\xfe", "X-ClickHouse-Key": READER.password},
        {"X-ClickHouse-User": "reader", "X-ClickHouse-Key": "s3cret-\xe9"},
    ):
        status, text = http(served, "SELECT 1", headers=headers)
        assert status == 401, (headers, status, text)
        assert text.startswith("Code: 516. DB::Exception: authentication failed")
    assert http(served, "SELECT 1", headers={"Authorization": BASIC}) == (200, "1\n")


def test_the_next_class_of_fault_database_parameters_and_formats(served: Served) -> None:
    auth = {"Authorization": BASIC}
    for database in ("system", "okr_ledger`; DROP TABLE x; --", "a\\"):
        status, text = http(served, "SELECT 1", headers=auth, params={"database": database})
        assert status == 403, (database, text)
    status, text = http(served, "SELECT 1", headers=auth, params={"default_format": "Template"})
    assert status == 403
    assert "the format 'Template' is not allowed" in text
    status, _ = http(served, "SELECT {x:UInt8}", headers=auth, params={"param_x y": "1"})
    assert status == 403
    status, text = http(
        served, "SELECT * FROM {t:Identifier}", headers=auth, params={"param_t": "system.users"}
    )
    assert (status, "an Identifier parameter is not allowed" in text) == (403, True)
    status, text = http(
        served, "SELECT getSetting('readonly') AS r", headers=auth, params={"readonly": "0"}
    )
    assert status == 403  # getSetting is not allowed; and settings in the URL are ignored


def test_clients_still_get_their_answers(served: Served) -> None:
    client = served.client()
    assert client.query("SELECT count() FROM okr_ledger.key_result_progress").result_rows == [(9,)]
    rows = client.query(
        "SELECT count() FROM okr_ledger.audit_history WHERE org_id = {org:String}",
        parameters={"org": "northwind"},
    ).result_rows
    assert rows == [(92,)]
    names = {row[0] for row in client.query("SHOW TABLES FROM okr_ledger").result_rows}
    assert "key_result_progress" in names
    described = client.query("DESCRIBE TABLE okr_ledger.checkpoints").result_rows
    assert "position" in {row[0] for row in described}
    auth = {"Authorization": BASIC}
    status, text = http(
        served,
        "SELECT org_id, count() AS n FROM key_result_progress GROUP BY org_id FORMAT JSONEachRow",
        headers=auth,
        params={"database": "okr_ledger"},
    )
    assert (status, text) == (200, '{"org_id":"northwind","n":9}\n')
    status, text = http(
        served,
        "WITH 2 AS two SELECT {x:UInt8} * two",
        method="GET",
        headers={"X-ClickHouse-User": "reader", "X-ClickHouse-Key": READER.password},
        params={"param_x": "21"},
    )
    assert (status, text) == (200, "42\n")
    assert http(served, None, method="GET")[0] == 401
    with urllib.request.urlopen(f"{served.url}/ping", timeout=5) as ping:
        assert ping.read() == b"Ok.\n"


def test_the_limits_stop_heavy_queries_at_the_endpoint(demo: Path) -> None:
    for served in serve(demo, QueryLimits(max_seconds=1, max_memory_bytes=64 << 20)):
        client = served.client()
        with pytest.raises(DatabaseError, match="TIMEOUT_EXCEEDED"):
            client.query("SELECT sum(number) FROM numbers(1000000000000)")
        with pytest.raises(DatabaseError, match="MEMORY_LIMIT_EXCEEDED"):
            client.query("SELECT groupArray(number) FROM numbers(1000000000)")
        assert client.query("SELECT 1").result_rows == [(1,)]


def test_the_engines_sessions_have_every_chdb_connections_settings(demo: Path) -> None:
    """Readers' and writers' handles gather no query log for nothing and answer from no query
    condition cache (it reused one value of a scalar subquery's granules for another), as
    every chDB connection; a reader's own settings come after them, ``readonly`` last."""
    asked = ", ".join(f"getSetting('{name}')" for name in CHDB_SESSION)
    expected = [[int(value) for value in CHDB_SESSION.values()]]
    for engine in (
        ReadOnlyEngine(str(demo / "clickhouse"), QueryLimits()),
        WriterEngine(str(demo / "clickhouse")),
    ):
        try:
            found = engine.query(f"SELECT {asked}", "JSONCompactEachRow")
            assert [[int(v) for v in orjson.loads(line)] for line in found.splitlines()] == expected
        finally:
            engine.close()
    reader = ReadOnlyEngine(str(demo / "clickhouse"), QueryLimits())
    try:
        assert reader.query("SELECT getSetting('readonly')", "TabSeparated").strip() == b"1"
    finally:
        reader.close()


def test_a_statement_sent_again_is_not_parsed_again_and_a_refused_one_always_is(
    demo: Path,
) -> None:
    """A poller's statement is checked by the engine's parser once (then its verdict is
    kept); a refused statement is checked, and refused, every time; the verdicts kept are
    bounded."""
    engine = ReadOnlyEngine(str(demo / "clickhouse"), QueryLimits())
    try:
        engine.use("okr_ledger")
        parsed: list[str] = []

        def counting(sql: str) -> Any:
            parsed.append(sql)
            return engine._rows(sql)

        guard = ReadOnlyGuard()
        poll = "SELECT org_id, max(position) FROM checkpoints GROUP BY org_id"
        first = guard.check(poll, counting)
        runs = len(parsed)
        assert runs >= 1
        for _ in range(5):
            assert guard.check(poll, counting) == first
        assert len(parsed) == runs  # kept: not parsed again
        rows = engine.query(first.sql, "JSONCompactEachRow")
        assert rows  # the demo's checkpoints, as the first check let it run

        for escape in ESCAPES:
            seen = []
            for _ in range(2):
                before = len(parsed)
                with pytest.raises((QueryRefusedError, ProjectionQueryError)) as refused:
                    guard.check(escape, counting)
                seen.append((len(parsed) - before, str(refused.value)))
            assert seen[0] == seen[1], escape  # checked again, the same way, refused again

        for i in range(ACCEPTED_KEPT + 1):
            guard.check(f"SELECT {i}", counting)
        before = len(parsed)
        guard.check("SELECT 0", counting)  # the oldest kept verdict went first
        assert len(parsed) > before
        before = len(parsed)
        guard.check(f"SELECT {ACCEPTED_KEPT}", counting)  # the latest is kept
        assert len(parsed) == before
    finally:
        engine.close()


def test_the_kept_verdicts_are_bounded_in_length_and_in_count_oldest_first(demo: Path) -> None:
    """A statement longer than :data:`ACCEPTED_KEPT_CHARS` is parsed at every check (one at
    the bound is kept); the guard keeps :data:`ACCEPTED_KEPT` verdicts, no fewer, no more,
    and a new one pushes out the one used least recently."""
    engine = ReadOnlyEngine(str(demo / "clickhouse"), QueryLimits())
    try:
        engine.use("okr_ledger")
        parsed: list[str] = []

        def counting(sql: str) -> Any:
            if "parseQueryToJSON" in sql:
                parsed.append(sql)
            return engine._rows(sql)

        def parses(guard: ReadOnlyGuard, sql: str) -> int:
            before = len(parsed)
            assert guard.check(sql, counting).sql == sql
            return len(parsed) - before

        def literal(length: int) -> str:
            head, tail = "SELECT '", "' AS s"
            return head + "x" * (length - len(head) - len(tail)) + tail

        guard = ReadOnlyGuard()
        at_bound, beyond = literal(ACCEPTED_KEPT_CHARS), literal(ACCEPTED_KEPT_CHARS + 1)
        assert (len(at_bound), len(beyond)) == (16_384, 16_385)
        assert [parses(guard, at_bound) for _ in range(3)] == [1, 0, 0]
        assert [parses(guard, beyond) for _ in range(3)] == [1, 1, 1]  # never kept

        guard = ReadOnlyGuard()
        statements = [f"SELECT {i}" for i in range(ACCEPTED_KEPT + 1)]
        assert ACCEPTED_KEPT == 256
        assert sum(parses(guard, sql) for sql in statements[:-1]) == ACCEPTED_KEPT
        assert sum(parses(guard, sql) for sql in statements[:-1]) == 0  # all 256 kept
        assert parses(guard, statements[0]) == 0  # used again: now the latest
        assert parses(guard, statements[-1]) == 1  # the 257th: the least recent goes
        assert len(guard._accepted) == ACCEPTED_KEPT
        assert parses(guard, statements[0]) == 0
        assert parses(guard, statements[-1]) == 0
        assert parses(guard, statements[1]) == 1  # the one pushed out (it pushes out 2)
        assert sum(parses(guard, sql) for sql in statements[3:-1]) == 0
        assert parses(guard, statements[2]) == 1
    finally:
        engine.close()


def wait_for_waiting(server: QueryServer, count: int) -> None:
    """Until ``count`` readers' statements wait in the readers' thread's queue."""
    deadline = time.monotonic() + 60  # only against a hang
    while server._thread._work_queue.qsize() < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.fixture
def slow_served(demo: Path) -> Iterator[Served]:
    """Served, its readers' statements running up to 20 s."""
    yield from serve(demo, QueryLimits(max_seconds=20))


def test_a_statement_whose_client_went_away_is_not_run(slow_served: Served) -> None:
    """Three readers' statements wait behind a busy readers' thread; their clients close
    their connections: none of them runs (each would take its 20 s), the next reader is
    answered as soon as the thread is free (no timing is asserted: 45 s is only a bound)."""
    server = slow_served.server
    assert server is not None
    gate = threading.Event()
    server._thread.submit(gate.wait, 120)  # the readers' thread busy, as under a statement
    try:
        heavy = b"SELECT sum(number) FROM numbers(1000000000000)"
        head = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{slow_served.port}\r\n"
            f"Authorization: {BASIC}\r\nContent-Length: {len(heavy)}\r\n\r\n"
        )
        sockets = [socket.create_connection(("127.0.0.1", slow_served.port)) for _ in range(3)]
        for sock in sockets:
            sock.sendall(head.encode() + heavy)
        wait_for_waiting(server, 3)
        for sock in sockets:
            sock.close()
        answers: list[tuple[int, str]] = []
        after = threading.Thread(
            target=lambda: answers.append(
                http(slow_served, "SELECT 42", headers={"Authorization": BASIC})
            )
        )
        after.start()
        wait_for_waiting(server, 4)
    finally:
        gate.set()
    after.join(45)  # the three, if they ran, would take 60 s
    assert answers == [(200, "42\n")]
    assert server.refusals.total == {"saturated": 0, "client_gone": 3}
    assert server.readers == 0
