"""An embedded chDB store, over ClickHouse's HTTP interface: read-only, or for writers too.

Only one process may open a chDB path. The process that holds it (the worker, or
``okr-ledger serve-store``) answers the others' queries. It speaks enough of ClickHouse's HTTP
interface (``POST /`` with the statement in the body or ``query=``, ``database=``,
``param_*=``, ``default_format=``; errors as ``Code: N. DB::Exception`` with
``X-ClickHouse-Exception-Code``; ``GET /ping``) that clickhouse-connect's HTTP client takes it
for a server: the CLI opens the store at ``http://user:password@127.0.0.1:PORT`` and every
query path stays the same.

A *writer* credential (``serve-store`` has one; the worker's endpoint has none) runs any
statement on a handle without ``readonly``, and inserts with data as ClickHouse does: the
``INSERT ... FORMAT name`` statement in ``query=`` or on the body's first line, the data after
it, compressed or not (``Content-Encoding``: lz4, zstd, gzip, deflate). chDB reads the data
from a file of this process's own spool directory (``INSERT ... FROM INFILE``, as
clickhouse-connect's chDB driver does). A writer's request with ``readonly`` set (as
``ProjectionStore.read_only`` sends it) is run as a reader's.

Every request needs a credential (HTTP Basic, or ``X-ClickHouse-User``/``X-ClickHouse-Key``,
as clickhouse-connect sends them). Requests a web browser makes for a page (an ``Origin``
header, ``Sec-Fetch-Site`` other than ``none``, or, on a loopback address, a ``Host`` that is
not) are refused before that. A reader's statement is checked by
:mod:`projections.readonly_sql` and runs on a chDB handle of its own with ``readonly = 1`` and
the query limits set for the whole session. Other settings in the URL are ignored.

Readers' statements run one at a time on one thread; writers' on others, never behind them:
one at a time too, or with ``writers`` (the store's process of :mod:`okr_ledger.store_host`)
up to that many at once, each on a chDB handle of its own (one client's statements come one
after the other anyway; a store's :meth:`~projections.store.ProjectionStore.dicts_together`
sends an answer's statements at once on as many connections).
At most ``max_waiting`` readers' statements (``OKR_QUERY_MAX_WAITING``) wait behind the one
running: the next is answered at once with HTTP 503 and ``Code: 202 ...
(TOO_MANY_SIMULTANEOUS_QUERIES)``, ClickHouse's error for a server over its
``max_concurrent_queries``. A waiting statement whose client has gone (its connection closed)
is not run when its turn comes. Both are counted, and logged as a WARNING at most once a
minute.

Connections are bounded by :mod:`projections.http_bounds` (``OKR_QUERY_MAX_CONNECTIONS``; an idle
connection, or a request head not complete, closed after ``OKR_QUERY_RECEIVE_TIMEOUT_SECONDS``).
A body is read within that time too: a reader's whole body from its head, a writer's (up to
hundreds of MiB, from a worker perhaps across a network) with no pause longer; else HTTP 408,
``Code: 209 ... (SOCKET_TIMEOUT)``, and the connection closed.
"""

import asyncio
import base64
import binascii
import logging
import queue
import re
import shutil
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from projections.client import CHDB_SESSION
from projections.http_bounds import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RECEIVE_TIMEOUT_S,
    REFUSALS_LOGGED_EVERY_S,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    BoundedSite,
    ConnectionBound,
    RefusalLog,
    handler_args,
)
from projections.query_credentials import Credential, is_loopback
from projections.readonly_sql import QueryLimits, ReadOnlyGuard, Rows, output_format
from schemas.errors import ConfigurationError, ProjectionQueryError, QueryRefusedError

log = logging.getLogger(__name__)

_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
READONLY, ACCESS_DENIED, AUTHENTICATION_FAILED = 164, 497, 516
QUERY_WAS_CANCELLED, SOCKET_TIMEOUT = 394, 209
DEFAULT_FORMAT = "TabSeparated"
MAX_QUERY_BYTES = 1 << 20
"""The longest statement a reader may send."""
DEFAULT_MAX_INSERT_BYTES = 512 << 20
"""The most data (decoded) one writer's request may carry."""
DEFAULT_MAX_WAITING = 32
"""Readers' statements that may wait behind the one running (``OKR_QUERY_MAX_WAITING``): a
dashboard or two refreshing all their panels at once. Beyond it a statement would wait for
tens of statements of up to ``OKR_QUERY_MAX_SECONDS`` each, longer than clients wait."""


class _SaturatedError(Exception):
    """A reader's statement refused: ``max_waiting`` statements wait already."""


class _BodyTooSlowError(Exception):
    """A request's body did not arrive within the receive timeout."""


class _ClientGoneError(Exception):
    """A reader's statement not run: its client closed the connection while it waited."""


class Refusals:
    """Readers' statements refused (``saturated``: too many waiting) or not run
    (``client_gone``), counted by reason and logged (:class:`RefusalLog`), each ``report``-ed
    (the worker's metrics). Thread-safe."""

    REASONS = ("saturated", "client_gone")

    def __init__(
        self,
        max_waiting: int,
        report: Callable[[str], None] | None = None,
        every: float = REFUSALS_LOGGED_EVERY_S,
    ) -> None:
        self.max_waiting = max_waiting
        self._report = report
        self._log = RefusalLog(self.REASONS, self._line, log, every)
        self.total = self._log.total

    def note(self, reason: str) -> None:
        self._log.note(reason)
        if self._report is not None:
            self._report(reason)

    def _line(self, since_last: dict[str, int], total: dict[str, int]) -> str:
        return (
            f"the query endpoint turned readers away: {since_last['saturated']} statements "
            f"refused ({self.max_waiting} waiting already: OKR_QUERY_MAX_WAITING) and "
            f"{since_last['client_gone']} not run (their clients went away while they waited) "
            f"since the last such line; since it started: {total['saturated']} refused, "
            f"{total['client_gone']} not run"
        )


class ChdbHandle:
    """A chDB handle on ``path`` (the engine this process has open already), in one database
    at a time, with ``settings`` for its whole session, after those of every chDB connection
    (:data:`projections.client.CHDB_SESSION`: no query log to gather, no query condition
    cache to answer from)."""

    def __init__(self, path: str, settings: dict[str, Any]) -> None:
        import chdb

        self.path = path
        connect: Any = chdb.connect  # untyped
        self._conn: Any = connect(path)
        for name, value in {**CHDB_SESSION, **settings}.items():
            self._conn.query(f"SET {name} = {value}", "TabSeparated")
        self._database: str | None = None

    def use(self, database: str | None, system: bool = False) -> None:
        """Make ``database`` (a plain name; ``system`` only if allowed) the current one."""
        if database is None or database == self._database:
            return
        if not _NAME.fullmatch(database) or (database.lower() == "system" and not system):
            raise QueryRefusedError(f"the database {database!r} is not allowed")
        self.query(f"USE `{database}`")
        self._database = database

    def query(self, sql: str, fmt: str = DEFAULT_FORMAT, params: Any = None) -> bytes:
        for name in params or {}:
            if not _NAME.fullmatch(name):
                raise QueryRefusedError(f"the parameter name {name!r} is not allowed")
        try:
            data: bytes = self._conn.query(sql, fmt, params=params or {}).bytes() or b""
        except Exception as error:
            self._drain()
            raise ProjectionQueryError(str(error).strip() or type(error).__name__) from error
        return data

    def _drain(self) -> None:
        """chDB hands what a failed query had written to the next query on the handle (one
        reader's partial rows as another's answer): a throwaway query takes it."""
        try:
            self._conn.query("SELECT 1", "TabSeparated")
        except Exception:  # the handle's own failure shows on the next real query
            return

    def close(self) -> None:
        self._conn.close()


class ReadOnlyEngine(ChdbHandle):
    """Statements checked by :mod:`projections.readonly_sql`, run with ``readonly = 1``."""

    def __init__(self, path: str, limits: QueryLimits) -> None:
        super().__init__(path, limits.settings())  # readonly last: it freezes the rest
        self._guard = ReadOnlyGuard()

    def _rows(self, sql: str) -> Rows:
        return [orjson.loads(line) for line in self.query(sql, "JSONCompactEachRow").splitlines()]

    def run(
        self, sql: str, default_format: str, params: dict[str, str], database: str | None
    ) -> tuple[bytes, str]:
        """The output of ``sql`` and its format; :class:`QueryRefusedError` if refused."""
        fmt = output_format(default_format) or DEFAULT_FORMAT
        self.use(database)
        checked = self._guard.check(sql, self._rows)
        fmt = checked.output_format or fmt
        return self.query(checked.sql, fmt, params), fmt


class WriterEngine(ChdbHandle):
    """Any statement, and inserts with data (spooled to a file chDB reads)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, {})
        self._spool = Path(tempfile.mkdtemp(prefix="okr-store-spool-"))  # mode 0700

    def run(
        self,
        sql: str,
        default_format: str,
        params: dict[str, str],
        database: str | None,
        data: bytes = b"",
    ) -> tuple[bytes, str]:
        """The output of ``sql`` (or of inserting ``data`` with it) and its format."""
        fmt = default_format if _FORMAT_NAME.fullmatch(default_format) else DEFAULT_FORMAT
        self.use(database, system=True)
        if not data:
            return self.query(sql, fmt, params), fmt
        insert = INSERT_WITH_DATA.fullmatch(sql)
        if insert is None:
            raise ProjectionQueryError(
                "Code: 62. DB::Exception: data was sent with a statement that is not "
                "INSERT INTO ... FORMAT name. (SYNTAX_ERROR)"
            )
        with tempfile.NamedTemporaryFile(dir=self._spool, suffix=".insert") as spooled:
            spooled.write(data)
            spooled.flush()
            infile = "'" + spooled.name.replace("\\", "\\\\").replace("'", "\\'") + "'"
            return self.query(
                f"{insert['head']} FROM INFILE {infile} FORMAT {insert['format']}", fmt, params
            ), fmt

    def close(self) -> None:
        super().close()
        shutil.rmtree(self._spool, ignore_errors=True)


INSERT_WITH_DATA = re.compile(
    r"\s*(?P<head>INSERT\s+INTO\s.+?)\s+FORMAT\s+(?P<format>[A-Za-z][A-Za-z0-9_]*)\s*",
    re.IGNORECASE | re.DOTALL,
)
"""An insert whose data follows the statement (as clickhouse-connect and clickhouse-client
send them); the writer's engine reads that data from a spooled file instead."""
_FORMAT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def split_insert(query: str, body: bytes) -> tuple[str, bytes]:
    """The statement and the insert data of a writer's request, as ClickHouse splits them:
    with ``query=`` an ``INSERT ... FORMAT`` takes the whole body as data; without it, the
    body's first line may be such a statement and the rest its data."""
    if query:
        if body and INSERT_WITH_DATA.fullmatch(query):
            return query, body
        return "\n".join(p for p in (query, body.decode("utf-8", "replace")) if p).strip(), b""
    first, newline, rest = body.partition(b"\n")
    head = first.decode("utf-8", "replace")
    if newline and rest and INSERT_WITH_DATA.fullmatch(head):
        return head, rest
    return body.decode("utf-8", "replace").strip(), b""


def decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from its ``Content-Encoding`` (one or more concatenated frames, as
    clickhouse-connect sends them), at most ``limit`` bytes; else :class:`QueryRefusedError`."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise QueryRefusedError(f"the request body is larger than {limit} bytes")
        return body
    new = _decompressor(encoding)
    out = bytearray()
    rest = body
    while rest:
        decoder = new()
        try:
            out += decoder.decompress(rest, limit + 1 - len(out))
        except Exception as error:
            raise QueryRefusedError(f"the {encoding} body cannot be decoded: {error}") from error
        if len(out) > limit:
            raise QueryRefusedError(f"the request body decodes to more than {limit} bytes")
        if not decoder.eof:
            raise QueryRefusedError(f"the {encoding} body is cut short")
        rest = decoder.unused_data
    return bytes(out)


def _lz4() -> Any:
    import lz4.frame  # type: ignore[import-untyped]  # no stubs; the one call is typed Any

    return lz4.frame.LZ4FrameDecompressor()


def _zstd() -> Any:
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:  # the backport clickhouse-connect requires
        from backports import zstd
    return zstd.ZstdDecompressor()


_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "lz4": _lz4,
    "zstd": _zstd,
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "deflate": zlib.decompressobj,
}
"""``Content-Encoding`` -> a new decoder of one frame (``decompress(data, max_length)``,
``eof``, ``unused_data``)."""


def _decompressor(encoding: str) -> Callable[[], Any]:
    if encoding not in _DECOMPRESSORS:
        raise QueryRefusedError(f"the Content-Encoding {encoding!r} is not supported")
    return _DECOMPRESSORS[encoding]


class QueryServer:
    """The aiohttp app answering ClickHouse HTTP requests: readers from a
    :class:`ReadOnlyEngine`, writers (if there is a ``writer`` engine) from it."""

    def __init__(
        self,
        engine: ReadOnlyEngine,
        credentials: Sequence[Credential],
        loopback: bool = True,
        writer: WriterEngine | None = None,
        max_insert_bytes: int = DEFAULT_MAX_INSERT_BYTES,
        *,
        max_waiting: int = DEFAULT_MAX_WAITING,
        refused: Callable[[str], None] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        receive_timeout_s: float = DEFAULT_RECEIVE_TIMEOUT_S,
        writers: int = 1,
    ) -> None:
        """``max_waiting``: readers' statements that may wait behind the one running;
        ``refused``: called with the reason (``saturated``, ``client_gone``) of each reader's
        statement refused or not run (the worker's metrics), from any thread;
        ``max_connections``, ``receive_timeout_s``: see :mod:`projections.http_bounds` (on
        :meth:`serve`'s server; the worker's web server bounds its own connections) and the
        bodies' reading; ``writers``: the writer's statements that may run at once, ``writer``
        the first handle, the others opened on ``writer``'s path when first needed (each on a
        thread of its own, kept until the server stops)."""
        self.engine = engine
        self.writer = writer
        self.credentials = tuple(credentials)
        self.loopback = loopback
        self.max_insert_bytes = max_insert_bytes
        self.refusals = Refusals(max_waiting, refused)
        self.connections = ConnectionBound(max_connections)
        self.receive_timeout_s = receive_timeout_s
        self._readers = 0  # readers' statements admitted and not finished (waiting, running)
        self._readers_lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-queries")
        self._writer_thread = ThreadPoolExecutor(
            max_workers=max(1, writers), thread_name_prefix="okr-writes"
        )
        self._writers: list[WriterEngine] = [] if writer is None else [writer]
        """The writer's handles opened (at most one per thread of ``_writer_thread``)."""
        self._idle_writers: queue.SimpleQueue[WriterEngine] = queue.SimpleQueue()
        for handle in self._writers:
            self._idle_writers.put(handle)
        self.app = web.Application()
        self.app.router.add_get("/ping", self._ping)
        self.app.router.add_route("*", "/", self._query)

    def mount(self, app: web.Application) -> None:
        """Answer on another aiohttp app's ``/`` and ``/ping`` (the Kafka worker's web server);
        :meth:`close` when it stops."""
        app.router.add_get("/ping", self._ping)
        app.router.add_route("*", "/", self._query)

    def close(self) -> None:
        """After the statement running now: chDB allows one path per process, so the handle
        must be closed before another one can be opened."""
        try:
            self._thread.submit(self.engine.close).result()
        except RuntimeError:  # the interpreter is exiting: no query runs any more
            self.engine.close()
        self._thread.shutdown(wait=False)

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        credential = self._authorised(request)
        if isinstance(credential, web.Response):
            return credential
        q = request.query
        params = {k.removeprefix("param_"): v for k, v in q.items() if k.startswith("param_")}
        writes = credential.role == "writer" and self.writer is not None
        writes = writes and q.get("readonly", "0") in ("", "0")
        loop = asyncio.get_running_loop()
        try:
            limit = self.max_insert_bytes if writes else MAX_QUERY_BYTES
            body = await _read_body(request, limit, self.receive_timeout_s, whole=not writes)
            encoding = request.headers.get("Content-Encoding", "")
            sql, data = split_insert(q.get("query", ""), decompressed(body, encoding, limit))
            if data and not writes:
                raise QueryRefusedError("INSERT is not allowed: the credential is read-only")
            if not sql:
                return await self._ping(request)
            arguments = (sql, q.get("default_format", DEFAULT_FORMAT), params, q.get("database"))
            if writes:
                result, fmt = await loop.run_in_executor(
                    self._writer_thread, self._run_writer, *arguments, data
                )
            else:
                result, fmt = await self._read(request, arguments)
        except _SaturatedError:
            return _error(
                503,
                TOO_MANY_SIMULTANEOUS_QUERIES,
                f"too many readers' statements are waiting ({self.refusals.max_waiting}): try "
                "again later. (TOO_MANY_SIMULTANEOUS_QUERIES)",
                headers={"Retry-After": "1"},
            )
        except _BodyTooSlowError:
            too_slow = _error(
                408,
                SOCKET_TIMEOUT,
                f"the request body did not arrive within {self.receive_timeout_s:g} s "
                "(OKR_QUERY_RECEIVE_TIMEOUT_SECONDS). (SOCKET_TIMEOUT)",
            )
            too_slow.force_close()  # the connection is closed after this answer
            return too_slow
        except ConnectionError:  # the client left while sending its body: nobody reads this
            return _error(400, QUERY_WAS_CANCELLED, "the client went away. (QUERY_WAS_CANCELLED)")
        except _ClientGoneError:  # nobody reads this answer
            return _error(503, QUERY_WAS_CANCELLED, "the client went away. (QUERY_WAS_CANCELLED)")
        except QueryRefusedError as error:
            return _error(403, READONLY, f"{error}. (READONLY)")
        except ProjectionQueryError as error:
            match = _ERROR_CODE.search(str(error))
            return _error(500, int(match.group(1)) if match else 1, str(error), prefixed=True)
        return web.Response(
            body=result,
            headers={"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC"},
        )

    @property
    def readers(self) -> int:
        """Readers' statements admitted and not finished: the one running and those waiting."""
        return self._readers

    async def _read(
        self, request: web.Request, arguments: tuple[str, str, dict[str, str], str | None]
    ) -> tuple[bytes, str]:
        """A reader's statement run on the readers' thread, if fewer than ``max_waiting``
        wait there already (else :class:`_SaturatedError`) and its client is still connected when
        its turn comes (else :class:`_ClientGoneError`)."""
        with self._readers_lock:
            if self._readers > self.refusals.max_waiting:  # the one running, and those waiting
                saturated = True
            else:
                saturated = False
                self._readers += 1
        if saturated:
            self.refusals.note("saturated")
            raise _SaturatedError
        try:
            future = self._thread.submit(self._run_reader, request, arguments)
        except BaseException:
            self._reader_done(None)
            raise
        # counted down when it ends, even if this handler were cancelled while it runs
        future.add_done_callback(self._reader_done)
        return await asyncio.wrap_future(future)

    def _run_reader(
        self, request: web.Request, arguments: tuple[str, str, dict[str, str], str | None]
    ) -> tuple[bytes, str]:
        # aiohttp (3.14) does not cancel a handler whose client disconnects: its request's
        # transport is gone (None) or closing. Read from this thread: a client leaving just
        # after is served as before.
        transport = request.transport
        if transport is None or transport.is_closing():
            self.refusals.note("client_gone")
            raise _ClientGoneError
        return self.engine.run(*arguments)

    def _run_writer(
        self,
        sql: str,
        default_format: str,
        params: dict[str, str],
        database: str | None,
        data: bytes,
    ) -> tuple[bytes, str]:
        """A writer's statement, on a handle no other thread uses now (a new one if none is
        free: there are no more than the threads)."""
        try:
            handle = self._idle_writers.get_nowait()
        except queue.Empty:
            assert self.writer is not None
            handle = WriterEngine(self.writer.path)
            with self._readers_lock:
                self._writers.append(handle)
        try:
            return handle.run(sql, default_format, params, database, data)
        finally:
            self._idle_writers.put(handle)

    def _close_writers(self) -> None:
        """After the writer's statements running now (their threads ended), every handle."""
        self._writer_thread.shutdown(wait=True)
        with self._readers_lock:
            handles, self._writers = self._writers, []
        for handle in handles:
            handle.close()

    def _reader_done(self, _future: "Future[tuple[bytes, str]] | None") -> None:
        with self._readers_lock:
            self._readers -= 1

    def _authorised(self, request: web.Request) -> Credential | web.Response:
        """The credential ``request`` presents, or why it may not run anything (a web page's
        request, no credential)."""
        if request.method not in ("GET", "POST"):
            return _error(405, ACCESS_DENIED, f"the method {request.method} is not allowed")
        if "Origin" in request.headers or request.headers.get("Sec-Fetch-Site", "none") != "none":
            return _error(403, ACCESS_DENIED, "requests from web pages are refused")
        if self.loopback and not is_loopback(_host_name(request.host)):
            return _error(403, ACCESS_DENIED, f"the Host {request.host!r} is not this machine")
        user, password = _presented(request)
        matching = [c for c in self.credentials if c.matches(user or "", password)]
        if user is None or not matching:
            return _error(
                401,
                AUTHENTICATION_FAILED,
                "authentication failed: a user and password are needed "
                "(HTTP Basic or X-ClickHouse-User/X-ClickHouse-Key)",
                headers={"WWW-Authenticate": 'Basic realm="okr-ledger queries"'},
            )
        return matching[0]

    async def serve(
        self,
        host: str,
        port: int,
        stop: asyncio.Event,
        listening: Callable[[int], None] | None = None,
    ) -> None:
        """Serve until ``stop`` is set (or the task is cancelled). With ``listening`` (called
        with the port, which may have been 0), not being able to listen is an error."""
        # Bodies are decoded here, within bounds, for every encoding clients send (lz4 too).
        runner = web.AppRunner(
            self.app,
            access_log=None,
            auto_decompress=False,
            **handler_args(self.receive_timeout_s),
        )
        await runner.setup()
        try:
            try:
                await BoundedSite(runner, host, port, self.connections).start()
            except OSError as error:
                if listening is not None:
                    raise ConfigurationError(
                        f"cannot listen on {host}:{port}: {error.strerror}"
                    ) from None
                # the worker's projections go on; only the serving is missing
                log.error(
                    "cannot serve queries on %s:%s (%s): set OKR_WORKER_WEB_PORT to a free port",
                    host,
                    port,
                    error.strerror,
                )
                return
            port = runner.addresses[0][1]
            what = "queries and writes" if self.writer is not None else "read-only queries"
            log.info("serving %s on http://%s:%s (ClickHouse HTTP)", what, host, port)
            if listening is not None:
                listening(port)
            await stop.wait()
        finally:
            await runner.cleanup()
            # After the statement running now (bounded by the limits): chDB allows one path
            # per process, so the handle must be closed before another one can be opened.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self.engine.close)
            self._thread.shutdown(wait=False)
            await loop.run_in_executor(None, self._close_writers)


async def _read_body(request: web.Request, limit: int, timeout_s: float, whole: bool) -> bytes:
    """The request's body as sent (maybe compressed), refused as soon as it passes ``limit``
    bytes: a reader's is refused before it is read whole. Within ``timeout_s``: the ``whole``
    body, else each part of it (a writer's large insert, sent at the network's pace); else
    :class:`_BodyTooSlowError`."""
    if request.content_length is not None and request.content_length > limit:
        raise QueryRefusedError(f"the request body is larger than {limit} bytes")
    body = bytearray()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            while chunk := await request.content.read(1 << 16):
                body += chunk
                if len(body) > limit:
                    raise QueryRefusedError(f"the request body is larger than {limit} bytes")
                if not whole:
                    deadline.reschedule(loop.time() + timeout_s)
    except TimeoutError:
        raise _BodyTooSlowError from None
    return bytes(body)


def _presented(request: web.Request) -> tuple[str | None, str]:
    """The user and password a request carries (``None`` as the user when there is none)."""
    user = request.headers.get("X-ClickHouse-User")
    if user is not None:
        return user, request.headers.get("X-ClickHouse-Key", "")
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else (None, "")


def _host_name(host: str) -> str:
    """``127.0.0.1:6066`` -> ``127.0.0.1``; ``[::1]:6066`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _error(
    status: int,
    code: int,
    message: str,
    prefixed: bool = False,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error as ClickHouse sends one: ``Code: N. DB::Exception: ...`` and its headers."""
    text = message if prefixed else f"Code: {code}. DB::Exception: {message}"
    return web.Response(
        status=status,
        text=text.strip() + "\n",
        headers={"X-ClickHouse-Exception-Code": str(code), **(headers or {})},
    )
