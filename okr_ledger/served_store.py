"""The projection store as the query commands see it on the Kafka runtime.

There the worker projects, so the query commands never catch up themselves. On a ClickHouse
server they read it directly; on the embedded chDB store (which only the worker may open)
they send their queries to the worker's endpoint, which speaks ClickHouse's HTTP interface
(:mod:`projections.query_server`), so every query runs unchanged. The endpoint's credential
comes from the settings or the token file in the data directory: nobody types it.
"""

import logging
from pathlib import Path
from urllib.parse import quote

from okr_ledger.settings import Settings
from okr_ledger.wiring import open_projection_store
from projections.client import parse_url
from projections.query_credentials import (
    TOKEN_FILE,
    WRITER_TOKEN_FILE,
    Credential,
    ensure_token,
    is_loopback,
    read_token,
)
from projections.store import ProjectionStore
from schemas.errors import (
    ConfigurationError,
    CredentialRefusedError,
    ProjectionUnavailableError,
)


def query_credential(
    settings: Settings, create: bool = False, host: str | None = None
) -> Credential:
    """The reader credential of the worker's endpoint (or of ``serve-store`` on ``host``):
    ``OKR_QUERY_PASSWORD``, else the token file (``create``: made when missing, as the worker
    does). A non-loopback endpoint needs the setting: a token file on one machine does not
    reach the clients of another."""
    if settings.query_password is not None:
        return Credential(settings.query_user, settings.query_password.get_secret_value())
    where = f"OKR_WORKER_WEB_HOST={settings.worker_web_host}" if host is None else f"--host {host}"
    if not is_loopback(settings.worker_web_host if host is None else host):
        raise ConfigurationError(
            f"{where} is not a loopback address: set OKR_QUERY_PASSWORD to serve queries there"
        )
    path = token_path(settings)
    return Credential(settings.query_user, ensure_token(path) if create else read_token(path))


def writer_credential(settings: Settings, host: str) -> Credential:
    """``serve-store``'s writer credential: ``OKR_STORE_WRITER_PASSWORD``, else the token file
    ``<data_dir>/store-writer-token`` (made when missing), on a loopback ``host`` only."""
    user = settings.store_writer_user
    if settings.store_writer_password is not None:
        return Credential(user, settings.store_writer_password.get_secret_value(), "writer")
    if not is_loopback(host):
        raise ConfigurationError(
            f"--host {host} is not a loopback address: set OKR_STORE_WRITER_PASSWORD "
            "(and OKR_QUERY_PASSWORD) to serve the store there"
        )
    return Credential(user, ensure_token(settings.data_dir / WRITER_TOKEN_FILE), "writer")


def store_url(credential: Credential, host: str, port: int, database: str) -> str:
    """``http://user:password@host:port/database``, the parts quoted."""
    user, password = quote(credential.user, safe=""), quote(credential.password, safe="")
    where = f"[{host}]" if ":" in host else host
    return f"http://{user}:{password}@{where}:{port}/{database}"


def endpoint_credential(settings: Settings) -> Credential | None:
    """The credential the worker's endpoint accepts (``None``: no endpoint, the store is a
    server), its token file created when missing."""
    if not parse_url(settings.resolved_clickhouse_url).embedded:
        return None
    return query_credential(settings, create=True)


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def worker_url(settings: Settings) -> str:
    """The endpoint's URL, with its credential (the CLI's store connects with it)."""
    database = parse_url(settings.resolved_clickhouse_url).database
    credential = query_credential(settings)
    return store_url(credential, settings.worker_web_host, settings.worker_web_port, database)


def open_served_store(settings: Settings) -> ProjectionStore:
    """The live projections of the Kafka runtime (read-only through the worker on chDB)."""
    target = parse_url(settings.resolved_clickhouse_url)
    # A refused connection is our one line: not the client's warnings before it (a server's
    # too, that stops answering in the middle of a command: `rebuild`'s comparison).
    for chatty in ("clickhouse_connect", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    if not target.embedded:
        # The worker migrates it; a reader's credential (serve-store's, a server's read-only
        # user) could not.
        store = open_projection_store(settings, migrate=False)
        store.client.database = store.database
        return store
    try:
        store = ProjectionStore.open(worker_url(settings), migrate=False)
    except ProjectionUnavailableError as error:
        if "Authentication failed" in str(error) or "AUTHENTICATION_FAILED" in str(error):
            raise CredentialRefusedError(
                f"the worker at {settings.worker_web_host}:{settings.worker_web_port} refused "
                f"this process's credential: the worker and this command need the same "
                f"OKR_DATA_DIR (token {token_path(settings)}) or OKR_QUERY_PASSWORD"
            ) from None
        raise ProjectionUnavailableError(
            f"no worker answers at {settings.worker_web_host}:{settings.worker_web_port}: "
            f"start `okr-ledger worker` (it holds the embedded store {target.path} and serves "
            "the queries)"
        ) from None
    store.client.database = store.database  # unqualified names in `okr-ledger sql`
    return store
