"""Read-only queries on an embedded chDB store, over ClickHouse's HTTP interface.

Only one process may open a chDB path, and the worker holds it; so the worker answers the
query commands itself. It speaks enough of ClickHouse's HTTP interface (``POST /`` with the
statement in the body or ``query=``, ``database=``, ``param_*=``, ``default_format=``; errors
as ``Code: N. DB::Exception`` with ``X-ClickHouse-Exception-Code``; ``GET /ping``) that
clickhouse-connect's HTTP client takes it for a server: the CLI opens the store at
``http://user:password@127.0.0.1:PORT`` and every query path stays the same.

Every request needs a credential (HTTP Basic, or ``X-ClickHouse-User``/``X-ClickHouse-Key``,
as clickhouse-connect sends them). Requests a web browser makes for a page (an ``Origin``
header, ``Sec-Fetch-Site`` other than ``none``, or, on a loopback address, a ``Host`` that is
not) are refused before that. Each statement is checked by :mod:`projections.readonly_sql`
and runs on a chDB handle of its own with ``readonly = 1`` and the query limits set for the
whole session. Settings in the URL are ignored.
"""

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiohttp import web

from projections.query_credentials import Credential, is_loopback
from projections.readonly_sql import QueryLimits, ReadOnlyGuard, Rows, output_format
from schemas.errors import ProjectionQueryError, QueryRefusedError

log = logging.getLogger(__name__)

_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
READONLY, ACCESS_DENIED, AUTHENTICATION_FAILED = 164, 497, 516
DEFAULT_FORMAT = "TabSeparated"


class ReadOnlyEngine:
    """A read-only chDB handle on ``path`` (the engine this process has open already)."""

    def __init__(self, path: str, limits: QueryLimits) -> None:
        import chdb

        connect: Any = chdb.connect  # untyped
        self._conn: Any = connect(path)
        for name, value in limits.settings().items():  # readonly last: it freezes the rest
            self._conn.query(f"SET {name} = {value}", "TabSeparated")
        self._database: str | None = None
        self._guard = ReadOnlyGuard()

    def _rows(self, sql: str) -> Rows:
        data = self._conn.query(sql, "JSONCompactEachRow").bytes() or b""
        return [orjson.loads(line) for line in data.splitlines()]

    def run(
        self, sql: str, default_format: str, params: dict[str, str], database: str | None
    ) -> tuple[bytes, str]:
        """The output of ``sql`` and its format; :class:`QueryRefusedError` if refused."""
        fmt = output_format(default_format) or DEFAULT_FORMAT
        if database is not None and database != self._database:
            if not _NAME.fullmatch(database) or database.lower() == "system":
                raise QueryRefusedError(f"the database {database!r} is not allowed")
            self._engine(f"USE `{database}`")
            self._database = database
        for name in params:
            if not _NAME.fullmatch(name):
                raise QueryRefusedError(f"the parameter name {name!r} is not allowed")
        checked = self._guard.check(sql, self._rows)
        fmt = checked.output_format or fmt
        data: bytes = self._engine(checked.sql, fmt, params).bytes() or b""
        return data, fmt

    def _engine(self, sql: str, fmt: str = DEFAULT_FORMAT, params: Any = None) -> Any:
        try:
            return self._conn.query(sql, fmt, params=params or {})
        except Exception as error:
            raise ProjectionQueryError(str(error).strip() or type(error).__name__) from error

    def close(self) -> None:
        self._conn.close()


class QueryServer:
    """The aiohttp app answering ClickHouse HTTP requests from a :class:`ReadOnlyEngine`."""

    def __init__(
        self, engine: ReadOnlyEngine, credentials: Sequence[Credential], loopback: bool = True
    ) -> None:
        self.engine = engine
        self.credentials = tuple(credentials)
        self.loopback = loopback
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-queries")
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
        if refusal := self._refused(request):
            return refusal
        q = request.query
        body = (await request.read()).decode("utf-8", errors="replace")
        sql = "\n".join(part for part in (q.get("query", ""), body) if part).strip()
        if not sql:
            return await self._ping(request)
        params = {k.removeprefix("param_"): v for k, v in q.items() if k.startswith("param_")}
        loop = asyncio.get_running_loop()
        try:
            data, fmt = await loop.run_in_executor(
                self._thread,
                self.engine.run,
                sql,
                q.get("default_format", DEFAULT_FORMAT),
                params,
                q.get("database"),
            )
        except QueryRefusedError as error:
            return _error(403, READONLY, f"{error}. (READONLY)")
        except ProjectionQueryError as error:
            match = _ERROR_CODE.search(str(error))
            return _error(500, int(match.group(1)) if match else 1, str(error), prefixed=True)
        return web.Response(
            body=data,
            headers={"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC"},
        )

    def _refused(self, request: web.Request) -> web.Response | None:
        """Why ``request`` may not run anything (a web page's request, no credential)."""
        if request.method not in ("GET", "POST"):
            return _error(405, ACCESS_DENIED, f"the method {request.method} is not allowed")
        if "Origin" in request.headers or request.headers.get("Sec-Fetch-Site", "none") != "none":
            return _error(403, ACCESS_DENIED, "requests from web pages are refused")
        if self.loopback and not is_loopback(_host_name(request.host)):
            return _error(403, ACCESS_DENIED, f"the Host {request.host!r} is not this machine")
        user, password = _presented(request)
        if user is None or not any(c.matches(user, password) for c in self.credentials):
            return _error(
                401,
                AUTHENTICATION_FAILED,
                "authentication failed: a user and password are needed "
                "(HTTP Basic or X-ClickHouse-User/X-ClickHouse-Key)",
                headers={"WWW-Authenticate": 'Basic realm="okr-ledger queries"'},
            )
        return None

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (or the task is cancelled)."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as error:  # the projections go on; only the serving is missing
                log.error(
                    "cannot serve queries on %s:%s (%s): set OKR_WORKER_WEB_PORT to a free port",
                    host,
                    port,
                    error.strerror,
                )
                return
            log.info("serving read-only queries on http://%s:%s (ClickHouse HTTP)", host, port)
            await stop.wait()
        finally:
            await runner.cleanup()
            # After the statement running now (bounded by the limits): chDB allows one path
            # per process, so the handle must be closed before another one can be opened.
            await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.close)
            self._thread.shutdown(wait=False)


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
