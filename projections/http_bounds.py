"""Bounds on the connections of an aiohttp server: the query endpoint (``okr-ledger
serve-store``) and the Kafka worker's web port (its query endpoint, ``/metrics``, health).

aiohttp (3.14) bounds a request's head in size (a line of :data:`MAX_LINE_BYTES`, at most
:data:`MAX_HEADERS` header fields of :data:`MAX_FIELD_BYTES`: beyond them, 400 and the
connection closed), and its keep-alive timer closes a connection that has no complete request
head :func:`handler_args`'s ``keepalive_timeout`` after it opened or after its previous answer
(an idle connection, or a head sent a byte at a time: the timer is not reset by bytes
received). That is aiohttp's own mechanism, used here with ``OKR_QUERY_RECEIVE_TIMEOUT_SECONDS``
(aiohttp's default keeps a connection 3,630 s). A body is read by the handler, which bounds it
in time itself (:class:`projections.query_server.QueryServer`).

aiohttp has no bound on the number of connections: :class:`ConnectionBound` counts them where
they are made (the protocol factory :class:`BoundedSite` listens with) and answers one beyond
``OKR_QUERY_MAX_CONNECTIONS`` with HTTP 503 in ClickHouse's error form as soon as its request
starts, then closes it (within :data:`REFUSED_LINGER_S`); it never reaches the parser or a
handler. Refusals are counted (``report``: the worker's metrics) and logged as a WARNING at
most once a minute, by :class:`RefusalLog`, as the query endpoint's refused statements are.

aiohttp logs each request its parser refuses (400) as an ERROR with a traceback: any client
could fill the log. :func:`handler_args` gives the request handler a :class:`ServerLog`, which
logs those through a :class:`RefusalLog` too, and every other error as aiohttp does.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8190
"""The longest request line (aiohttp's default, stated here): beyond it, 400."""
MAX_FIELD_BYTES = 8190
"""The longest header name or value (aiohttp's default): beyond it, 400."""
MAX_HEADERS = 128
"""The most header fields of a request (aiohttp's default): beyond them, 400."""
DEFAULT_MAX_CONNECTIONS = 128
"""``OKR_QUERY_MAX_CONNECTIONS``: dashboards' connection pools and the workers' writers, and
a bound on the readers' bodies held at once (at most 1 MiB each)."""
DEFAULT_RECEIVE_TIMEOUT_S = 10.0
"""``OKR_QUERY_RECEIVE_TIMEOUT_SECONDS``: as ``serve``'s ``OKR_HTTP_HEAD_TIMEOUT_SECONDS``. A
pooled client connection idle that long is closed: a client sending on it just as it closes
gets an error (clickhouse-connect sends a read again, not an insert)."""
REFUSED_LINGER_S = 1.0
"""How long a refused connection is kept, at most, for its request to come (and be answered
503) and for the client to read that answer before the socket closes."""
REFUSALS_LOGGED_EVERY_S = 60.0
"""The least time between two WARNING lines about refusals (:class:`RefusalLog`)."""
TOO_MANY_SIMULTANEOUS_QUERIES = 202


def handler_args(receive_timeout_s: float) -> dict[str, Any]:
    """aiohttp's request handler's arguments (``web.Application(handler_args=...)``,
    ``web.AppRunner(**...)``): an idle connection, or a head not complete, is closed
    ``receive_timeout_s`` after the connection opened or its previous answer; heads are
    bounded in size; an answered request's unread body is read (and dropped) for at most
    ``receive_timeout_s`` before the connection closes; requests aiohttp's parser refuses are
    logged by a :class:`ServerLog` of the server's own."""
    return {
        "keepalive_timeout": receive_timeout_s,
        "lingering_time": receive_timeout_s,
        "max_line_size": MAX_LINE_BYTES,
        "max_field_size": MAX_FIELD_BYTES,
        "max_headers": MAX_HEADERS,
        "logger": ServerLog(),
    }


def refusal(max_connections: int) -> bytes:
    """The whole answer to a connection beyond the bound."""
    body = (
        f"Code: {TOO_MANY_SIMULTANEOUS_QUERIES}. DB::Exception: too many connections are open "
        f"({max_connections}: OKR_QUERY_MAX_CONNECTIONS): try again later. "
        "(TOO_MANY_SIMULTANEOUS_QUERIES)\n"
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"X-ClickHouse-Exception-Code: {TOO_MANY_SIMULTANEOUS_QUERIES}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class RefusalLog:
    """Events counted by reason, and a WARNING line on ``logger`` at most every ``every``
    seconds (the first at once) with the counts since the last line and since the start:
    ``message(since_last, total)`` writes it. Thread-safe (:meth:`note` from any thread)."""

    def __init__(
        self,
        reasons: Sequence[str],
        message: Callable[[dict[str, int], dict[str, int]], str],
        logger: logging.Logger = log,
        every: float = REFUSALS_LOGGED_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = dict.fromkeys(reasons, 0)
        """Events by reason since the start."""
        self._unlogged = dict.fromkeys(reasons, 0)
        self._message = message
        self._logger = logger
        self._every = every
        self._clock = clock
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        """One event for ``reason`` (one of the ``reasons``)."""
        with self._lock:
            self.total[reason] += 1
            self._unlogged[reason] += 1
            now = self._clock()
            if self._logged_at is not None and now - self._logged_at < self._every:
                return
            since_last, total = self._unlogged, dict(self.total)
            self._unlogged = dict.fromkeys(total, 0)
            self._logged_at = now
        self._logger.warning("%s", self._message(since_last, total))


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's request handler's logger (``logger``, :func:`handler_args`): aiohttp's own
    (``aiohttp.server``), except for requests its parser refused (a malformed head, or body
    parsed with it; aiohttp answers them 400 and closes). aiohttp 3.14 logs each of those as
    an ERROR with a traceback, so any client could fill the log: here they are counted and
    logged by a :class:`RefusalLog` (a WARNING line at most every ``every`` seconds). An
    error in a request's handler (500), even one of the parser's kind, is logged as aiohttp
    logs it; so is a request aiohttp logs at debug level (a first request that is not HTTP)."""

    def __init__(self, every: float = REFUSALS_LOGGED_EVERY_S) -> None:
        super().__init__(server_logger, {})
        self.refusals = RefusalLog(("malformed",), self._line, every=every)
        self._last = ""

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        refused = kwargs.get("exc_info")
        if isinstance(refused, HttpProcessingError) and _raised_by_the_parser(refused):
            self._last = type(refused).__name__
            self.refusals.note("malformed")
            return
        super().exception(msg, *args, **kwargs)

    def _line(self, since_last: dict[str, int], total: dict[str, int]) -> str:
        return (
            f"malformed requests: {since_last['malformed']} refused by aiohttp's parser (HTTP "
            f"400; the last: {self._last}) since the last such line; {total['malformed']} since "
            "it started"
        )


def _raised_by_the_parser(error: BaseException) -> bool:
    """``error`` was raised by aiohttp's parser, as its request handler fed it what came
    (``RequestHandler.data_received``, or ``start`` for what follows an upgrade), not in
    ``_handle_request`` (a request's handler). Another aiohttp would fail here, so its errors
    would be logged as aiohttp logs them (``tests/projections/test_refusal_log.py``)."""
    caught = error.__traceback__
    if caught is None:
        return False
    frame = caught.tb_frame
    return frame.f_globals.get("__name__") == "aiohttp.web_protocol" and frame.f_code.co_name in (
        "data_received",
        "start",
    )


class ConnectionBound:
    """At most ``max_connections`` open connections of an aiohttp server; the others are
    answered 503 and closed, and each is ``report``-ed (the worker's metrics). Used on the
    event loop's thread only."""

    def __init__(
        self,
        max_connections: int,
        every: float = REFUSALS_LOGGED_EVERY_S,
        report: Callable[[], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.open = 0
        """Connections made (by the factory) and not yet lost."""
        self._answer = refusal(max_connections)
        self._report = report
        self._log = RefusalLog(("max_connections",), self._line, every=every)

    @property
    def refused(self) -> int:
        """Connections refused since the start."""
        return self._log.total["max_connections"]

    def protocols(self, server: web.Server) -> "ProtocolFactory":
        """The protocol factory to listen with: ``server``'s own protocol (aiohttp's request
        handler) for a connection within the bound, else one that refuses it."""
        return ProtocolFactory(self, server)

    def refuse(self) -> asyncio.Protocol:
        self._log.note("max_connections")
        if self._report is not None:
            self._report()
        return _Refused(self._answer)

    def _line(self, since_last: dict[str, int], total: dict[str, int]) -> str:
        return (
            f"too many connections: {since_last['max_connections']} refused (HTTP 503: "
            f"{self.max_connections} open already, OKR_QUERY_MAX_CONNECTIONS) since the last "
            f"such line; {total['max_connections']} since it started"
        )


class ProtocolFactory:
    """What :class:`BoundedSite` listens with (see :meth:`ConnectionBound.protocols`)."""

    def __init__(self, bound: ConnectionBound, server: web.Server) -> None:
        self._bound = bound
        self._server = server

    def __call__(self) -> asyncio.BaseProtocol:
        bound = self._bound
        if bound.open >= bound.max_connections:
            return bound.refuse()
        bound.open += 1
        return _Counted(self._server(), bound)


class _Counted(asyncio.Protocol):
    """aiohttp's request handler, its connection counted until it is lost."""

    __slots__ = ("_bound", "_counted", "_inner")

    def __init__(self, inner: asyncio.Protocol, bound: ConnectionBound) -> None:
        self._inner = inner
        self._bound = bound
        self._counted = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._bound.open -= 1
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection beyond the bound: answered 503 once its request starts (what it sent is
    read and dropped, so that closing does not reset the connection before the client reads
    the answer), closed when the client closes or :data:`REFUSED_LINGER_S` after it opened."""

    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self._answered = False
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(REFUSED_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if self._answered or transport is None or transport.is_closing():
            return
        self._answered = True
        transport.write(self._answer)
        if transport.can_write_eof():
            transport.write_eof()  # the rest of the request is read, and dropped, till it ends

    def eof_received(self) -> bool | None:
        return False  # closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None


class BoundedSite(web.BaseSite):
    """A TCP site whose connections are bounded by a :class:`ConnectionBound`."""

    __slots__ = ("_bound", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, bound: ConnectionBound
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._bound = bound

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner was set up
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._bound.protocols(server), self._host, self._port, backlog=self._backlog
        )
