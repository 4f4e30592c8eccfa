"""The query endpoint's connections, as a client that holds them reaches a real ``okr-ledger
serve-store``: a head or a body sent a byte at a time, an idle connection, too many
connections, a head over aiohttp's bounds. No timing is asserted: deadlines only against
hangs."""

import socket
import threading
import time
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.projections.serve_store_support import ServedStore, post, served_store
from tests.sockets import readable

HANG_S = 30.0
"""Far beyond the bounds the tests set (1 s): only against a hang."""


def _reader(served: ServedStore) -> tuple[str, dict[str, str]]:
    url = served.reader_url()
    user, password = url.removeprefix("http://").partition("@")[0].split(":")
    return url, {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}


def _drip(
    connection: socket.socket, byte: bytes, reset_is_close: bool = False
) -> tuple[int, bytes]:
    """Send ``byte`` every 0.2 s until the server answers or closes (not sending past its
    close: the reset that would answer it can drop what the server sent): how many were sent,
    and all the server sent until it closed."""
    sent, deadline = 0, time.monotonic() + HANG_S
    while time.monotonic() < deadline and not readable(connection, 0.2):
        connection.sendall(byte)
        sent += 1
    assert time.monotonic() < deadline, "the connection was still open"
    return sent, _until_closed(connection, reset_is_close)


def _until_closed(connection: socket.socket, reset_is_close: bool = False) -> bytes:
    """All the server sent until it closed. ``reset_is_close``: a server that closes without
    an answer may find a line the client sent just before unread, and its kernel then resets
    the connection: that is its close too (nothing was answered to lose)."""
    connection.settimeout(HANG_S)
    answer = b""
    try:
        while chunk := connection.recv(65536):
            answer += chunk
    except ConnectionResetError:
        if not reset_is_close:
            raise
    return answer


def test_a_slow_head_a_slow_body_and_an_idle_connection_are_closed_readers_are_answered(
    tmp_path: Path,
) -> None:
    """With OKR_QUERY_RECEIVE_TIMEOUT_SECONDS=1: a head sent a header line at a time is
    closed (aiohttp's keep-alive timer), a reader's body sent a byte at a time is answered
    408 (SOCKET_TIMEOUT) and closed, a connection that sends nothing is closed; meanwhile
    readers are answered."""
    env = {"OKR_QUERY_RECEIVE_TIMEOUT_SECONDS": "1"}
    with served_store(tmp_path / "data", env=env) as served:
        reader_url, reader = _reader(served)
        address = ("127.0.0.1", served.port)
        results: dict[str, tuple[int, bytes]] = {}

        def slow_head() -> None:
            with socket.create_connection(address, timeout=HANG_S) as connection:
                connection.sendall(b"POST /?database=okr_ledger HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                results["head"] = _drip(connection, b"X-Slow: a\r\n", reset_is_close=True)

        def slow_body() -> None:
            head = (
                "POST /?database=okr_ledger HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"X-ClickHouse-User: {reader['X-ClickHouse-User']}\r\n"
                f"X-ClickHouse-Key: {reader['X-ClickHouse-Key']}\r\n"
                "Content-Length: 1000\r\n\r\nSELECT 1 "
            )
            with socket.create_connection(address, timeout=HANG_S) as connection:
                connection.sendall(head.encode())
                results["body"] = _drip(connection, b" ")

        def idle() -> None:
            with socket.create_connection(address, timeout=HANG_S) as connection:
                results["idle"] = (0, _until_closed(connection))

        slow = [threading.Thread(target=f) for f in (slow_head, slow_body, idle)]
        for thread in slow:
            thread.start()
        # a reader is answered while they are held
        assert post(f"http://127.0.0.1:{served.port}/", b"SELECT 41 + 1", reader) == (200, "42\n")
        for thread in slow:
            thread.join(2 * HANG_S)
        sent, answer = results["head"]
        assert answer == b""  # closed by aiohttp's keep-alive timer, unanswered
        assert sent >= 3  # its head was still coming when it was closed
        sent, answer = results["body"]
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert b"X-ClickHouse-Exception-Code: 209" in answer
        assert answer.rstrip().endswith(b"(OKR_QUERY_RECEIVE_TIMEOUT_SECONDS). (SOCKET_TIMEOUT)")
        assert sent >= 3
        assert results["idle"] == (0, b"")
        reader_client = clickhouse_connect.get_client(dsn=reader_url)
        assert reader_client.query("SELECT 1").result_rows == [(1,)]


def test_connections_beyond_the_bound_are_refused_and_served_once_fewer_are_open(
    tmp_path: Path,
) -> None:
    """With OKR_QUERY_MAX_CONNECTIONS=3 and three connections open (idle), the next
    connection is answered 503 in ClickHouse's form, at once (clickhouse-connect retries it,
    then raises TOO_MANY_SIMULTANEOUS_QUERIES); once they are closed, readers are answered.
    One WARNING line for all the refusals."""
    env = {"OKR_QUERY_MAX_CONNECTIONS": "3", "OKR_QUERY_RECEIVE_TIMEOUT_SECONDS": "600"}
    with served_store(tmp_path / "data", env=env) as served:
        reader_url, reader = _reader(served)
        base = f"http://127.0.0.1:{served.port}/"
        held = [
            socket.create_connection(("127.0.0.1", served.port), timeout=HANG_S) for _ in range(3)
        ]
        try:
            status, text = post(base, b"SELECT 1", reader)
            assert status == 503, text
            assert text.startswith("Code: 202. DB::Exception: too many connections are open (3")
            assert text.rstrip().endswith("(TOO_MANY_SIMULTANEOUS_QUERIES)")
            with pytest.raises(DatabaseError, match="TOO_MANY_SIMULTANEOUS_QUERIES"):
                clickhouse_connect.get_client(dsn=reader_url)
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + HANG_S  # until the server has seen them close
        while (answer := post(base, b"SELECT 1", reader))[0] == 503:
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert answer == (200, "1\n")
        assert clickhouse_connect.get_client(dsn=reader_url).query("SELECT 2").result_rows == [(2,)]
    log = (tmp_path / "data-serve-store.log").read_text()
    warnings = [line for line in log.splitlines() if "too many connections" in line]
    assert len(warnings) == 1, warnings  # one line a minute, not one per refusal
    assert " WARNING " in warnings[0]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /?query=" + b"1" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: a\r\n" % n for n in range(200))
        + b"\r\n",
    ],
    ids=["request-line", "header-value", "header-count"],
)
def test_a_head_over_aiohttps_bounds_is_answered_400(tmp_path: Path, head: bytes) -> None:
    """A request line or a header field over 8190 bytes, or over 128 header fields: 400, the
    connection closed (aiohttp's bounds, stated in projections.http_bounds). Sent twice: one
    WARNING line, not an ERROR with a traceback each (aiohttp's own logging)."""
    with served_store(tmp_path / "data") as served:
        _, reader = _reader(served)
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", served.port), timeout=HANG_S) as sent:
                sent.sendall(head)
                answer = _until_closed(sent)
            assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n"), answer[:300]
        base = f"http://127.0.0.1:{served.port}/"
        assert post(base, b"SELECT 1", reader) == (200, "1\n")
    log = (tmp_path / "data-serve-store.log").read_text()
    assert "Error handling request" not in log, log  # aiohttp's ERROR and traceback
    warnings = [line for line in log.splitlines() if "malformed requests" in line]
    assert len(warnings) == 1, warnings  # one line a minute, not one per request
    assert " WARNING " in warnings[0]
    assert "refused by aiohttp's parser (HTTP 400; the last: " in warnings[0]
