"""``okr-ledger serve-store``: one process holds the embedded store and serves it to the others.

chDB opens a data directory in one process only. Several workers (and BI tools) share one
embedded store on a machine through this process, which speaks ClickHouse's HTTP interface
(:mod:`projections.query_server`) with two credentials: the workers' writer credential and
the readers' read-only one.
"""

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from okr_ledger.served_store import query_credential, store_url, writer_credential
from okr_ledger.settings import Settings
from projections.client import parse_url
from projections.query_credentials import is_loopback
from schemas.errors import ConfigurationError, MissingExtraError

if TYPE_CHECKING:  # aiohttp (the embedded extra) is imported when the command runs
    from projections.query_server import QueryServer

DEFAULT_PORT = 8123
"""ClickHouse's own HTTP port: BI tools' ClickHouse connectors suggest it."""

HELP = "\n\n".join(
    (
        "Serve the embedded projection store (OKR_CLICKHOUSE_URL, chdb://...) over "
        "ClickHouse's HTTP interface, so that several workers and BI tools share it.",
        "The first line printed on stdout is the writer URL, "
        "http://writer:PASSWORD@HOST:PORT/DATABASE: set OKR_CLICKHOUSE_URL to it for every "
        "`okr-ledger worker` (and the query commands). Writers may insert and migrate.",
        "Readers (BI tools: Grafana, Metabase, DBeaver, notebooks; `okr-ledger sql`) get "
        "read-only credentials with `okr-ledger serve-store --print-reader-url` (same --host "
        "and --port): user OKR_QUERY_USER (default reader), password OKR_QUERY_PASSWORD or "
        "the token in <OKR_DATA_DIR>/query-token. Their statements are checked and run with "
        "readonly = 1.",
        "The writer's password is OKR_STORE_WRITER_PASSWORD, or the token in "
        "<OKR_DATA_DIR>/store-writer-token (created with mode 0600). On an address that is "
        "not a loopback address, both passwords must be set explicitly.",
    )
)


def serve_store(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
    ] = DEFAULT_PORT,
    print_reader_url: Annotated[
        bool,
        typer.Option("--print-reader-url", help="Print the read-only URL for BI tools, and exit."),
    ] = False,
) -> None:
    settings = Settings()
    target = parse_url(settings.resolved_clickhouse_url)
    if not target.embedded or target.path is None:
        raise ConfigurationError(
            f"OKR_CLICKHOUSE_URL is a ClickHouse server ({target.describe()}): point the "
            "workers and BI tools at it; serve-store serves an embedded chdb:// store"
        )
    reader = query_credential(settings, create=True, host=host)
    if print_reader_url:
        print(store_url(reader, host, port, target.database))
        return
    writer = writer_credential(settings, host)
    try:
        from projections.query_server import QueryServer, ReadOnlyEngine, WriterEngine
        from projections.store import ProjectionStore
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or "aiohttp", "embedded") from error
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Migrated now, so that readers find the views before any worker has started.
    store = ProjectionStore.open(settings.resolved_clickhouse_url)
    try:
        server = QueryServer(
            ReadOnlyEngine(target.path, settings.query_limits),
            [reader, writer],
            loopback=is_loopback(host),
            writer=WriterEngine(target.path),
            max_waiting=settings.query_max_waiting,
            max_connections=settings.query_max_connections,
            receive_timeout_s=settings.query_receive_timeout_seconds,
        )

        def listening(actual_port: int) -> None:
            print(store_url(writer, host, actual_port, target.database), flush=True)
            logging.getLogger(__name__).info(
                "serving %s to writers and readers; readers' URL: `okr-ledger serve-store "
                "--print-reader-url --host %s --port %s`",
                target.describe(),
                host,
                actual_port,
            )

        asyncio.run(_serve(server, host, port, listening))
    finally:
        store.close()


async def _serve(
    server: "QueryServer", host: str, port: int, listening: Callable[[int], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.serve(host, port, stop, listening)


def register(app: typer.Typer) -> None:
    app.command("serve-store", help=HELP)(serve_store)
