"""The server: ``create_app`` builds the FastAPI app on a runtime; ``serve`` runs it.

Layers: routes (:mod:`~okr_ledger.http.intake`, :mod:`~okr_ledger.http.reading`,
:mod:`~okr_ledger.http.dashboard`) -> :class:`~okr_ledger.http.services.Services` (keys, rate
limits, the group-commit writer, the projections) -> the runtime (embedded or Kafka), never
``if kafka``. Everything that can be wrong in the configuration (the hooks file, the rate
limit, the key store, the ledger) fails here, before the server listens.
"""

import gc
import ipaddress
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from okr_ledger import __version__
from okr_ledger.http import dashboard, intake, monitoring, reading
from okr_ledger.http.group_commit import GroupCommitter
from okr_ledger.http.hooks import load_hooks
from okr_ledger.http.metrics import Metrics, MetricsMiddleware
from okr_ledger.http.problems import ProblemError, problem
from okr_ledger.http.rate_limits import RateLimits
from okr_ledger.http.services import Services
from okr_ledger.runtime import Runtime
from okr_ledger.settings import Settings
from schemas.errors import (
    LedgerUnavailableError,
    OkrLedgerError,
    ProjectionUnavailableError,
    UnknownNameError,
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _problem_handler(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return error.response()


def _unknown_name(_request: Request, error: Exception) -> Response:
    assert isinstance(error, UnknownNameError)
    return problem(404, "unknown_name", str(error), suggestions=error.suggestions)


def _unavailable(_request: Request, error: Exception) -> Response:
    unavailable = isinstance(error, LedgerUnavailableError | ProjectionUnavailableError)
    status, code = (503, "unavailable") if unavailable else (500, "error")
    return problem(status, code, str(error), {"Retry-After": "1"} if status == 503 else None)


def _invalid_request(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    details = [
        {"loc": ".".join(str(part) for part in e["loc"]), "msg": e["msg"]} for e in error.errors()
    ]
    return problem(
        400, "invalid_parameter", "the request's parameters are invalid", details=details
    )


def create_app(settings: Settings, runtime: Runtime, *, host: str = "127.0.0.1") -> FastAPI:
    """The app, with its services open (the writer thread running); they close on shutdown."""
    metrics = Metrics()
    hooks = load_hooks(settings.http_hooks_file)
    limits = RateLimits(settings.http_rate_limit)
    keys = runtime.key_store(follow=True)
    committer = GroupCommitter(runtime.submitter, settings.http_group_max, metrics.groups.observe)
    try:
        committer.start()
    except BaseException:
        keys.close()
        raise
    reader = runtime.reader()
    services = Services(
        settings, runtime, keys, committer, limits, hooks, metrics, reader,
        loopback=is_loopback(host),
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                committer.close()
                keys.close()
            finally:
                reader.close()

    app = FastAPI(
        title="OKR Ledger",
        version=__version__,
        description="Submit events and read projections of an OKR Ledger.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(ProblemError, _problem_handler)
    app.add_exception_handler(UnknownNameError, _unknown_name)
    app.add_exception_handler(OkrLedgerError, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(intake.router)
    app.include_router(reading.router)
    app.include_router(monitoring.router)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """Liveness: the server answers, and which runtime it runs on."""
        document = {"status": "ok", "runtime": runtime.name, "version": __version__}
        return Response(orjson.dumps(document), media_type="application/json")

    app.add_route("/metrics", metrics.response, include_in_schema=False)
    return app


def serve(settings: Settings, runtime: Runtime, host: str, port: int) -> None:
    """Run the server until SIGINT or SIGTERM (uvloop and httptools when installed)."""
    import uvicorn

    app = create_app(settings, runtime, host=host)
    # Everything loaded so far (FastAPI, pydantic's schemas, the app) lives as long as the
    # server: out of the collector's sight, so its full collections do not rescan it.
    gc.freeze()
    print(f"serving http://{host}:{port}/ on the {runtime.name} runtime", file=sys.stderr)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
    )
