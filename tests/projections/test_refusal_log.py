"""projections.http_bounds.RefusalLog: events counted by reason, one WARNING line at most
every interval (the first at once) with the counts since the last line and the totals; and
ServerLog, aiohttp's request handler's logger, through which the requests aiohttp's parser
refuses are logged so."""

import asyncio
import logging
import threading

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from projections.http_bounds import RefusalLog, ServerLog, handler_args

LOGGER = "tests.refusal_log"


class Clock:
    """A clock the test moves (the log's interval without waiting for it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(since_last: dict[str, int], total: dict[str, int]) -> str:
    """The counts since the last line, then the totals: ``a b / a b``."""
    return f"{since_last['a']} {since_last['b']} / {total['a']} {total['b']}"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


def test_the_first_event_logs_at_once_and_later_ones_in_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RefusalLog(("a", "b"), line, logging.getLogger(LOGGER), every=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        refusals.note("a")
        assert warnings(caplog) == [line({"a": 1, "b": 0}, {"a": 1, "b": 0})]
        clock.now += 30
        refusals.note("b")
        refusals.note("b")
        clock.now += 29.9
        refusals.note("a")
        assert len(warnings(caplog)) == 1  # within the interval: counted, not logged
        clock.now += 0.1  # 60 s after the first line
        refusals.note("b")
        assert warnings(caplog)[1:] == [line({"a": 1, "b": 3}, {"a": 2, "b": 3})]
        clock.now += 61
        refusals.note("a")
        assert warnings(caplog)[2:] == [line({"a": 1, "b": 0}, {"a": 3, "b": 3})]
    assert refusals.total == {"a": 3, "b": 3}


def test_events_from_many_threads_are_all_counted_in_the_totals_and_the_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RefusalLog(("a", "b"), line, logging.getLogger(LOGGER), every=60.0, clock=clock)

    def note(reason: str) -> None:
        for _ in range(5000):
            refusals.note(reason)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        threads = [threading.Thread(target=note, args=(r,)) for r in ("a", "b", "a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert refusals.total == {"a": 10000, "b": 10000}
        assert len(warnings(caplog)) == 1
        clock.now += 60
        refusals.note("a")
    first, second = warnings(caplog)
    assert first in ("1 0 / 1 0", "0 1 / 0 1")  # the first event, at once
    # each event in exactly one line: the first one's or the next
    assert second == ("10000 10000" if first == "1 0 / 1 0" else "10001 9999") + " / 10001 10000"


async def _exchange(port: int, sent: bytes) -> bytes:
    """What a server answers ``sent``, up to its close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_heads_aiohttps_parser_refuses_are_one_warning_and_handlers_errors_stay_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real aiohttp server with handler_args: two malformed heads are answered 400 and
    logged as one WARNING line (aiohttp 3.14 logs an ERROR with a traceback for each); a
    handler's errors (500), even one of the parser's own kind, are still aiohttp's ERRORs."""

    async def parser_kind(_request: web.Request) -> web.Response:
        raise BadHttpMessage("raised by a handler")

    async def failing(_request: web.Request) -> web.Response:
        raise RuntimeError("a handler's bug")

    async def main() -> ServerLog:
        app = web.Application()
        app.router.add_get("/parser-kind", parser_kind)
        app.router.add_get("/failing", failing)
        args = handler_args(10.0)
        runner = web.AppRunner(app, access_log=None, **args)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            for head in (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n"):
                assert (await _exchange(port, head)).startswith(b"HTTP/1.0 400 Bad Request")
            for path in ("/parser-kind", "/failing"):
                head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                assert (await _exchange(port, head)).startswith(b"HTTP/1.1 500 ")
        finally:
            await runner.cleanup()
        server_log = args["logger"]
        assert isinstance(server_log, ServerLog)
        return server_log

    with caplog.at_level(logging.DEBUG):
        server_log = asyncio.run(main())
    assert server_log.refusals.total == {"malformed": 2}
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in lines] == [
        ("projections.http_bounds", "WARNING"),
        ("aiohttp.server", "ERROR"),
        ("aiohttp.server", "ERROR"),
    ]
    assert lines[0].getMessage() == (
        "malformed requests: 1 refused by aiohttp's parser (HTTP 400; the last: "
        "BadHttpMessage) since the last such line; 1 since it started"
    )
    errors = [r.exc_info[1] if r.exc_info else None for r in lines[1:]]
    assert [type(error) for error in errors] == [BadHttpMessage, RuntimeError]
