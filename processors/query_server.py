"""Read-only queries on the worker's embedded chDB store, over ClickHouse's HTTP interface.

Only one process may open a chDB path, and the worker holds it; so the worker answers the
query commands itself. It speaks enough of ClickHouse's HTTP interface (``POST /`` with the
statement in the body or ``query=``, ``database=``, ``param_*=``, ``default_format=``; errors
as ``Code: N. DB::Exception`` with ``X-ClickHouse-Exception-Code``; ``GET /ping``) that
clickhouse-connect's HTTP client takes it for a server: the CLI opens the store at
``http://127.0.0.1:PORT`` and every query path stays the same.

Statements run on a chDB handle of their own set to ``readonly = 1``, which is what enforces
read-only (the first-word check only gives a clearer error). Settings in the URL are ignored.
"""

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

READ_ONLY_STATEMENTS = frozenset(
    ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
READONLY_ERROR = 164


class QueryError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ReadOnlyEngine:
    """A read-only chDB handle on ``path`` (the engine this process has open already)."""

    def __init__(self, path: str) -> None:
        import chdb

        connect: Any = chdb.connect  # untyped
        self._conn: Any = connect(path)
        self._conn.query("SET readonly = 1", "TabSeparated")
        self._database: str | None = None

    def run(self, sql: str, fmt: str, params: dict[str, str], database: str | None) -> bytes:
        words = sql.lstrip(" \t\r\n(").split(maxsplit=1)
        if not words or words[0].upper() not in READ_ONLY_STATEMENTS:
            raise QueryError(
                "Code: 164. DB::Exception: the worker serves read-only statements only "
                f"({', '.join(sorted(READ_ONLY_STATEMENTS))}). (READONLY)",
                READONLY_ERROR,
            )
        try:
            if database and database != self._database:
                self._conn.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
                self._database = database
            result = self._conn.query(sql, fmt, params=params)
        except Exception as error:
            message = str(error).strip() or type(error).__name__
            match = _ERROR_CODE.search(message)
            raise QueryError(message, int(match.group(1)) if match else 1) from error
        data: bytes = result.bytes() or b""
        return data

    def close(self) -> None:
        self._conn.close()


class QueryServer:
    """The aiohttp app answering ClickHouse HTTP requests from a :class:`ReadOnlyEngine`."""

    def __init__(self, engine: ReadOnlyEngine) -> None:
        self.engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okr-queries")
        self.app = web.Application()
        self.app.router.add_get("/ping", self._ping)
        self.app.router.add_route("*", "/", self._query)

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _query(self, request: web.Request) -> web.Response:
        q = request.query
        body = (await request.read()).decode("utf-8", errors="replace")
        sql = "\n".join(part for part in (q.get("query", ""), body) if part).strip()
        if not sql:
            return await self._ping(request)
        params = {k.removeprefix("param_"): v for k, v in q.items() if k.startswith("param_")}
        match = _TRAILING_FORMAT.search(sql)
        fmt = match.group(1) if match else q.get("default_format", "TabSeparated")
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(
                self._thread, self.engine.run, sql, fmt, params, q.get("database")
            )
        except QueryError as error:
            return web.Response(
                status=403 if error.code == READONLY_ERROR else 500,
                text=f"{error}\n",
                headers={"X-ClickHouse-Exception-Code": str(error.code)},
            )
        return web.Response(
            body=data,
            headers={"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC"},
        )

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
            self._thread.shutdown(wait=False)
