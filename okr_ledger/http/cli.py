"""``okr-ledger serve`` and ``okr-ledger keys create|list|revoke``.

``keys`` works on a core install; ``serve`` needs the ``http`` extra and says so otherwise.
"""

import sys
from datetime import UTC, datetime
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from okr_ledger.consoles import err, out
from okr_ledger.http.keys import KeyStore, Scope, new_key
from okr_ledger.settings import Settings
from okr_ledger.wiring import bootstrap
from schemas.errors import ConfigurationError, MissingExtraError

keys_app = typer.Typer(
    name="keys",
    help="Keys of the HTTP API: one per source (write) or reader.",
    no_args_is_help=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _store() -> KeyStore:
    return bootstrap(Settings()).key_store()


@keys_app.command("create")
def create(
    org: Annotated[list[str], typer.Option("--org", help="An org it may use (repeatable).")],
    source: Annotated[
        str | None, typer.Option("--source", help="The source its submissions must name.")
    ] = None,
    scope: Annotated[
        list[Scope] | None, typer.Option("--scope", help="write (default) or read; repeatable.")
    ] = None,
    types: Annotated[
        str | None, typer.Option("--types", help="Event types it may send, comma-separated.")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Make a key and print it once: only its SHA-256 is stored."""
    scopes = tuple(dict.fromkeys(scope or [Scope.WRITE]))
    if Scope.WRITE in scopes and not source:
        raise typer.BadParameter("a write key needs --source", param_hint="--source")
    chosen = tuple(t.strip() for t in types.split(",") if t.strip()) if types else None
    try:
        token, record = new_key(scopes=scopes, orgs=tuple(org), source=source, types=chosen)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(f"cannot make that key: {problems}") from None
    store = _store()
    try:
        store.add(record)
    finally:
        store.close()
    if json:
        sys.stdout.buffer.write(orjson.dumps({"key": token, **record.summary()}) + b"\n")
        return
    out.print(token, highlight=False, soft_wrap=True)
    err.print(
        f"key {record.key_id}: {', '.join(scopes)} for {', '.join(record.orgs)}"
        + (f" as source {record.source}" if record.source else "")
        + " (shown once: only its hash is stored)",
        highlight=False,
    )


@keys_app.command("list")
def list_keys(json: JsonFlag = False) -> None:
    """Every key (never the key itself): id, scopes, source, orgs, types, created, revoked."""
    store = _store()
    try:
        records = store.records()
    finally:
        store.close()
    if json:
        for record in records:
            sys.stdout.buffer.write(orjson.dumps(record.summary()) + b"\n")
        return
    table = Table("id", "scopes", "source", "orgs", "types", "created", "revoked")
    for r in records:
        table.add_row(
            r.key_id,
            ", ".join(r.scopes),
            escape(r.source or ""),
            escape(", ".join(r.orgs)),
            escape(", ".join(r.types) if r.types is not None else "any"),
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke a key: every server refuses it from then on (on Kafka, within a refresh)."""
    store = _store()
    try:
        record = store.revoke(key_id, datetime.now(UTC))
    finally:
        store.close()
    assert record.revoked_at is not None
    out.print(f"revoked key {record.key_id} at {record.revoked_at:%Y-%m-%d %H:%M:%S}Z")


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (OKR_HTTP_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (OKR_HTTP_PORT, 8080).", min=1, max=65535)
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Server processes on the one socket, each with its own writer "
            "(OKR_HTTP_WORKERS, 1).",
            min=1,
            max=32,
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (/v1/..., /docs) and the dashboard (/) on this runtime."""
    settings = Settings()
    try:
        from okr_ledger.http.app import serve as run
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or "fastapi", "http") from error
    run(
        settings,
        bootstrap(settings),
        host or settings.http_host,
        port or settings.http_port,
        workers or settings.http_workers,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.add_typer(keys_app)
