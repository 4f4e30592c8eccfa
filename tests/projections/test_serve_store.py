"""``okr-ledger serve-store``: a real process serving the embedded store to writers and readers."""

import gzip
import os
import re
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import lz4.frame  # type: ignore[import-untyped]  # no stubs; used to compress a test body
import pytest
from backports import zstd
from clickhouse_connect.driver.exceptions import DatabaseError

from events.kafka_records import RejectionLanes
from okr_ledger.demo import DEMO_ORG
from processors.kafka_projector import LedgerProjection, LedgerRecord
from projections.client import CHDB_SESSION, parse_url
from projections.query_credentials import TOKEN_FILE, WRITER_TOKEN_FILE
from projections.query_server import decompressed, split_insert
from projections.store import ProjectionStore
from schemas.errors import ProjectionQueryError, ProjectionUnavailableError, QueryRefusedError
from tests.kafka.agent_support import records
from tests.projections.readonly_support import data_state, sql_of
from tests.projections.serve_store_support import CLI, ServedStore, post, served_store
from tests.projections.sql_escapes import ESCAPES


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedStore]:
    with served_store(tmp_path / "data") as store:
        yield store


def client(url: str, **options: Any) -> Any:
    return clickhouse_connect.get_client(dsn=url, **options)


def test_the_first_line_is_the_writer_url_with_the_token_of_the_data_dir(
    served: ServedStore, tmp_path: Path
) -> None:
    token = tmp_path / "data" / WRITER_TOKEN_FILE
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    expected = f"http://writer:{token.read_text().strip()}@127.0.0.1:{served.port}/okr_ledger"
    assert served.writer_url == expected
    reader = served.reader_url()
    password = (tmp_path / "data" / TOKEN_FILE).read_text().strip()
    assert reader == f"http://reader:{password}@127.0.0.1:{served.port}/okr_ledger"
    assert served.stop() == 0  # SIGTERM: a clean stop


def test_readers_read_the_migrated_views_and_cannot_write(served: ServedStore) -> None:
    reader = client(served.reader_url())
    assert reader.query("SELECT count() FROM key_result_progress").result_rows == [(0,)]
    for statement in (
        "INSERT INTO okr_ledger.rejections (position) VALUES (1)",
        "DROP TABLE okr_ledger.audit_events",
        "CREATE TABLE okr_ledger.x (a UInt8) ENGINE = Memory",
    ):
        with pytest.raises(DatabaseError, match="READONLY"):
            reader.command(statement)
    with pytest.raises(DatabaseError, match="READONLY"):
        reader.insert(
            "okr_ledger.projection_settings", [("a", "b")], column_names=["name", "value"]
        )
    writer = client(served.writer_url)
    assert writer.query("EXISTS TABLE okr_ledger.audit_events").result_rows == [(1,)]
    refused = "SELECT count() FROM okr_ledger.projection_settings WHERE name = 'a'"
    assert writer.query(refused).result_rows == [(0,)]


def test_the_writers_session_has_every_chdb_connections_settings(served: ServedStore) -> None:
    """No query log gathered for nothing, no query condition cache to answer from (as on every
    chDB connection; a reader's session, whose statements may not read settings, is checked
    in test_query_server.py)."""
    asked = ", ".join(f"getSetting('{name}')" for name in CHDB_SESSION)
    found = client(served.writer_url).query(f"SELECT {asked}").result_rows
    assert [tuple(int(value) for value in row) for row in found] == [
        tuple(int(value) for value in CHDB_SESSION.values())
    ]


def test_a_writer_asking_for_readonly_is_a_reader(served: ServedStore) -> None:
    writer = client(served.writer_url)
    with pytest.raises(DatabaseError, match="READONLY"):
        writer.command("DROP TABLE okr_ledger.audit_events", settings={"readonly": 1})
    assert writer.query("EXISTS TABLE okr_ledger.audit_events").result_rows == [(1,)]


@pytest.mark.parametrize("compression", [False, "lz4", "zstd", "gzip"])  # as the driver can
def test_writers_insert_compressed_or_not(served: ServedStore, compression: str | bool) -> None:
    writer = client(served.writer_url, compress=compression)
    writer.command("CREATE TABLE t (n UInt32, s String) ENGINE = MergeTree ORDER BY n")
    writer.insert("t", [(n, f"row {n}") for n in range(10_000)], column_names=["n", "s"])
    assert writer.query("SELECT count(), sum(n), max(s) FROM t").result_rows == [
        (10_000, sum(range(10_000)), "row 9999")
    ]


def test_inserts_with_the_statement_in_the_url_or_on_the_first_line(served: ServedStore) -> None:
    writer = client(served.writer_url)
    writer.command("CREATE TABLE t (n UInt32) ENGINE = MergeTree ORDER BY n")
    user, password = served.writer_url.removeprefix("http://").partition("@")[0].split(":")
    headers = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
    base = f"http://127.0.0.1:{served.port}/?database=okr_ledger"
    query = urllib.parse.quote("INSERT INTO t FORMAT JSONEachRow")
    assert post(f"{base}&query={query}", b'{"n": 1}\n{"n": 2}\n', headers)[0] == 200
    gzipped = gzip.compress(b'{"n": 3}\n')
    with_encoding = {**headers, "Content-Encoding": "gzip"}
    assert post(f"{base}&query={query}", gzipped, with_encoding)[0] == 200
    assert post(base, b"INSERT INTO t FORMAT CSV\n4\n5\n", headers)[0] == 200
    status, text = post(base, b"SELECT 1\n6\n", headers)  # not an insert: one statement
    assert (status, "Syntax error" in text) == (500, True)
    status, text = post(f"{base}&query={query}", b"\x1f\x8b broken", with_encoding)
    assert (status, text.startswith("Code: 164.")) == (403, True)
    assert writer.query("SELECT groupArray(n) FROM (SELECT n FROM t ORDER BY n)").result_rows == [
        ([1, 2, 3, 4, 5],)
    ]


def test_no_credential_or_a_wrong_one_is_refused(served: ServedStore) -> None:
    base = f"http://127.0.0.1:{served.port}/"
    assert post(base, b"SELECT 1", {})[0] == 401
    assert post(base, b"SELECT 1", {"X-ClickHouse-User": "writer", "X-ClickHouse-Key": "x"})[0] == (
        401
    )
    reader_password = served.reader_url().removeprefix("http://").partition("@")[0].split(":")[1]
    wrong = {"X-ClickHouse-User": "writer", "X-ClickHouse-Key": reader_password}
    assert post(base, b"SELECT 1", wrong)[0] == 401  # the reader's password is not the writer's


def test_a_reader_may_not_send_a_long_body_a_writer_may(served: ServedStore) -> None:
    base = f"http://127.0.0.1:{served.port}/?database=okr_ledger"
    writer_url = served.writer_url.removeprefix("http://").partition("@")[0].split(":")
    reader_url = served.reader_url().removeprefix("http://").partition("@")[0].split(":")
    writer = {"X-ClickHouse-User": writer_url[0], "X-ClickHouse-Key": writer_url[1]}
    reader = {"X-ClickHouse-User": reader_url[0], "X-ClickHouse-Key": reader_url[1]}
    padded = b"SELECT 1 " + b" " * (2 << 20)  # a 2 MiB statement
    status, text = post(base, padded, reader)
    assert (status, "larger than 1048576 bytes" in text) == (403, True)
    assert post(base, b"SELECT 1", reader) == (200, "1\n")
    client(served.writer_url).command("CREATE TABLE t (n UInt32) ENGINE = MergeTree ORDER BY n")
    rows = b"".join(b"%d\n" % n for n in range(400_000))  # 2.6 MB of CSV
    assert len(rows) > 2 << 20
    assert post(base, b"INSERT INTO t FORMAT CSV\n" + rows, writer)[0] == 200
    assert post(base, b"SELECT count() FROM t", writer) == (200, "400000\n")


def test_the_demo_projects_through_the_served_store(served: ServedStore, tmp_path: Path) -> None:
    """A second process writes its projections through the served store; a reader sees them."""
    env = {
        **os.environ,
        "OKR_DATA_DIR": str(tmp_path / "demo"),
        "OKR_CLICKHOUSE_URL": served.writer_url,
    }
    done = subprocess.run(
        [*CLI, "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    summary = re.search(r"accepted\s*│\s*(\d+)", done.stdout)
    assert summary is not None, done.stdout
    accepted = int(summary.group(1))
    reader = client(served.reader_url())
    events = reader.query("SELECT org_id, count() FROM audit_history GROUP BY org_id")
    assert events.result_rows == [(DEMO_ORG, accepted)]
    # The query commands of the Kafka runtime (which never project) read with a reader's URL.
    on_kafka = {**env, "OKR_LEDGER_URL": "kafka://127.0.0.1:1"}
    on_kafka["OKR_CLICKHOUSE_URL"] = served.reader_url()
    count = [*CLI, "sql", "--json", "SELECT count() AS n FROM audit_history"]
    done = subprocess.run(count, env=on_kafka, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, f'{{"n":{accepted}}}\n'), done.stderr
    drop = [*CLI, "sql", "DROP TABLE audit_events"]
    done = subprocess.run(drop, env=on_kafka, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "DROP is not allowed" in done.stderr


REFUSED = ("READONLY", "not allowed", "Code: 62.")
"""What a refused escape's error says: read-only mode, the check's reason, or a syntax error."""


def test_every_escape_is_refused_to_readers_and_to_writers_asking_readonly(
    served: ServedStore, tmp_path: Path
) -> None:
    """The endpoint BI tools are given: each escape, by a reader and by a writer that asks for
    ``readonly``, is refused, and neither the projections nor the files change."""
    demo = tmp_path / "demo"
    env = {**os.environ, "OKR_DATA_DIR": str(demo), "OKR_CLICKHOUSE_URL": served.writer_url}
    done = subprocess.run(
        [*CLI, "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    reader, writer = client(served.reader_url()), client(served.writer_url)

    def files() -> frozenset[str]:
        return frozenset(
            str(p.relative_to(tmp_path))
            for p in tmp_path.rglob("*")
            if p.is_file() and "clickhouse" not in p.relative_to(tmp_path).parts[:2]
        )

    with ProjectionStore.open(served.writer_url, migrate=False) as store:
        before = data_state(demo, store), files()
        assert before[0].projections["audit_events"][0] > 0
        ran = []
        for escape in ESCAPES:
            for who, session, settings in (
                ("reader", reader, {}),
                ("writer asking readonly", writer, {"readonly": 1}),
            ):
                try:
                    session.query(sql_of(escape, demo), settings=settings)
                    ran.append(f"{who} ran {escape!r}")
                except DatabaseError as error:  # refused, or not SQL at all; nothing else
                    if not any(sign in str(error) for sign in REFUSED):
                        ran.append(f"{who} failed otherwise on {escape!r}: {error}")
        assert ran == [], "\n".join(ran)
        assert (data_state(demo, store), files()) == before
    sql = [*CLI, "sql", f"SELECT 'gone' INTO OUTFILE '{demo}/ledger.db' TRUNCATE"]
    as_reader = {**env, "OKR_CLICKHOUSE_URL": served.reader_url()}
    done = subprocess.run(sql, env=as_reader, capture_output=True, text=True, check=False)
    assert (done.returncode, "INTO OUTFILE is not allowed" in done.stderr) == (1, True)
    assert (demo / "ledger.db").stat().st_size > 0


def test_a_non_loopback_address_needs_both_passwords(tmp_path: Path) -> None:
    def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "serve-store", "--host", "0.0.0.0", "--port", "0"],
            env={**os.environ, "OKR_DATA_DIR": str(tmp_path / "data"), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    refused = serve({})
    assert (refused.returncode, refused.stdout) == (1, "")
    assert "--host 0.0.0.0 is not a loopback address: set OKR_QUERY_PASSWORD" in refused.stderr
    refused = serve({"OKR_QUERY_PASSWORD": "r" * 20})
    assert (refused.returncode, refused.stdout) == (1, "")
    assert "set OKR_STORE_WRITER_PASSWORD" in refused.stderr
    assert not (tmp_path / "data" / "clickhouse").exists()  # nothing was opened


def test_a_store_held_by_another_process_says_so_and_names_serve_store(
    served: ServedStore, tmp_path: Path
) -> None:
    url = f"chdb://{tmp_path / 'data' / 'clickhouse'}"
    with pytest.raises(ProjectionUnavailableError) as raised:
        ProjectionStore.open(url)
    message = str(raised.value)
    held_by = f"open in another process (pid {served.process.pid}, started by pid {os.getpid()})"
    assert held_by in message
    assert "run `okr-ledger serve-store`" in message
    worker = subprocess.run(
        [*CLI, "worker"],
        env={
            **os.environ,
            "OKR_DATA_DIR": str(tmp_path / "data"),
            "OKR_LEDGER_URL": "kafka://127.0.0.1:1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 1
    assert worker.stderr.count("\n") == 1, worker.stderr  # one line, no chDB chatter
    assert f"(pid {served.process.pid}, started by pid {os.getpid()})" in worker.stderr
    assert parse_url(url).embedded


def test_bodies_decode_within_bounds_and_split_as_clickhouse_does() -> None:
    data = b"x" * 1000
    for encoding, body in (
        ("lz4", lz4.frame.compress(data) + lz4.frame.compress(data)),
        ("zstd", zstd.compress(data) + zstd.compress(data)),
        ("gzip", gzip.compress(data * 2)),
        ("deflate", zlib.compress(data * 2)),
        ("identity", data * 2),
    ):
        assert decompressed(body, encoding, 2000) == data * 2
        with pytest.raises(QueryRefusedError, match=r"(more|larger) than 1999 bytes"):
            decompressed(body, encoding, 1999)
        if encoding != "identity":
            with pytest.raises(QueryRefusedError, match=r"cut short|cannot be decoded"):
                decompressed(body[:-3], encoding, 5000)
    with pytest.raises(QueryRefusedError, match="'br' is not supported"):
        decompressed(b"", "br", 10)
    insert = "INSERT INTO t (a) FORMAT Native"
    assert split_insert(insert, b"\x01\x02") == (insert, b"\x01\x02")
    assert split_insert("", insert.encode() + b"\n\x01\n") == (insert, b"\x01\n")
    assert split_insert("SELECT 1", b"FORMAT JSON") == ("SELECT 1\nFORMAT JSON", b"")
    assert split_insert("", b"SELECT 1\n FORMAT Native") == ("SELECT 1\n FORMAT Native", b"")
    assert split_insert("", b"INSERT INTO t SELECT 1\nFROM x") == (
        "INSERT INTO t SELECT 1\nFROM x",
        b"",
    )


def test_a_store_that_stops_answering_is_unavailable_a_refused_statement_is_not(
    served: ServedStore,
) -> None:
    """What a Kafka worker's projector waits out (the store down) and what ends it (a
    statement refused) are told apart by the store: ``ProjectionUnavailableError`` only for a
    server that did not answer."""
    given: list[LedgerRecord] = [(0, r.offset, r.key, r.value) for r in records()]
    with ProjectionStore.open(served.writer_url) as store:
        projection = LedgerProjection(store, 1, RejectionLanes(1))
        projection.apply(given[:10], [])
        assert store.rows("SELECT count() FROM {db}.audit_events") == [(10,)]
        with pytest.raises(ProjectionQueryError) as refused:
            store.rows("SELECT no_such_column FROM {db}.checkpoints")
        assert not isinstance(refused.value, ProjectionUnavailableError)
        served.process.kill()
        served.process.wait(30)
        with pytest.raises(ProjectionUnavailableError):
            store.positions()
        with pytest.raises(ProjectionUnavailableError, match="insert into"):
            projection.apply(given[10:], [])


HEAVY = "SELECT sum(number) FROM numbers(1000000000000)"
"""A reader's statement that runs until its time limit (OKR_QUERY_MAX_SECONDS)."""


def test_a_saturated_endpoint_refuses_readers_at_once_and_still_answers_writers(
    tmp_path: Path,
) -> None:
    """One reader's statement runs, OKR_QUERY_MAX_WAITING (2) wait: the next reader gets 503
    and ClickHouse's TOO_MANY_SIMULTANEOUS_QUERIES at once, a writer is answered meanwhile,
    and readers are answered again once the slow statements have ended."""
    env = {"OKR_QUERY_MAX_WAITING": "2", "OKR_QUERY_MAX_SECONDS": "4"}
    with served_store(tmp_path / "data", env=env) as served:
        reader_url = served.reader_url()
        user, password = reader_url.removeprefix("http://").partition("@")[0].split(":")
        reader = {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}
        base = f"http://127.0.0.1:{served.port}/?database=okr_ledger"
        answers: list[tuple[int, str]] = []
        slow = [
            threading.Thread(target=lambda: answers.append(post(base, HEAVY.encode(), reader)))
            for _ in range(4)
        ]
        for thread in slow:
            thread.start()
        deadline = time.monotonic() + 120  # only against a hang
        while not any(s == 503 for s, _ in answers) and any(t.is_alive() for t in slow):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        refused = [(s, text) for s, text in answers if s == 503]
        assert len(refused) == 1, answers
        assert refused[0][1].startswith("Code: 202. DB::Exception: too many readers' statements")
        assert refused[0][1].rstrip().endswith("(TOO_MANY_SIMULTANEOUS_QUERIES)")
        # clickhouse-connect retries a 503 (twice), then raises ClickHouse's error
        with pytest.raises(DatabaseError, match="TOO_MANY_SIMULTANEOUS_QUERIES"):
            client(reader_url).query("SELECT 1")
        # the writers' thread is not the readers': answered while the readers' are busy
        writer = client(served.writer_url)
        assert writer.query("SELECT count() FROM okr_ledger.audit_events").result_rows == [(0,)]
        assert any(thread.is_alive() for thread in slow)
        for thread in slow:
            thread.join(120)
        statuses = sorted(s for s, _ in answers)
        assert statuses == [500, 500, 500, 503], answers  # three ran to their time limit
        assert all("TIMEOUT_EXCEEDED" in text for s, text in answers if s == 500)
        assert client(reader_url).query("SELECT 1").result_rows == [(1,)]
    log = (tmp_path / "data-serve-store.log").read_text()
    warnings = [line for line in log.splitlines() if "query endpoint turned readers away" in line]
    assert len(warnings) == 1, warnings  # one line a minute, not one per refusal
    assert " WARNING " in warnings[0]
