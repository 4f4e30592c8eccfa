"""The server: ``create_app`` builds the FastAPI app on a runtime; ``serve`` runs it.

Layers: routes (:mod:`~okr_ledger.http.intake`, :mod:`~okr_ledger.http.reading`,
:mod:`~okr_ledger.http.dashboard`) -> :class:`~okr_ledger.http.services.Services` (keys, rate
limits, the group-commit writer, the projections) -> the runtime (embedded or Kafka), never
``if kafka``. Everything that can be wrong in the configuration (the hooks file, the rate
limit, the key store, the ledger) fails here, before the server listens.

``serve --workers N`` (N > 1) runs N such apps, one per process, on one socket: uvicorn's own
supervisor starts them (spawned, each building its app with :func:`worker_app`), restarts one
that dies, and stops them all on SIGINT or SIGTERM. Each has its own runtime, writer thread,
keys, rate limits and reader; their metrics are summed through files (:mod:`.metrics`).
"""

import ctypes
import gc
import ipaddress
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from okr_ledger import __version__
from okr_ledger.http import dashboard, intake, monitoring, reading
from okr_ledger.http.group_commit import GroupCommitter
from okr_ledger.http.headers import SecurityHeaders
from okr_ledger.http.hooks import load_hooks
from okr_ledger.http.metrics import MULTIPROC_DIR, Metrics, MetricsMiddleware
from okr_ledger.http.problems import ProblemError, problem
from okr_ledger.http.protocol import BoundedHttpToolsProtocol
from okr_ledger.http.rate_limits import RateLimits
from okr_ledger.http.services import Services
from okr_ledger.runtime import Runtime
from okr_ledger.settings import Settings
from okr_ledger.wiring import bootstrap
from schemas.errors import (
    ConfigurationError,
    LedgerUnavailableError,
    OkrLedgerError,
    ProjectionUnavailableError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from uvicorn.supervisors import Multiprocess


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


def create_app(
    settings: Settings, runtime: Runtime, *, host: str = "127.0.0.1", workers: int = 1
) -> FastAPI:
    """The app, with its services open (the writer thread running); they close on shutdown.
    ``workers``: how many processes serve (this one among them)."""
    metrics = Metrics(multiprocess=workers > 1)
    hooks = load_hooks(settings.http_hooks_file)
    limits = RateLimits(settings.http_rate_limit)
    keys = runtime.key_store(follow=True)
    committer = GroupCommitter(runtime.submitter, settings.http_group_max, metrics.groups.observe)
    try:
        committer.start()
    except BaseException:
        keys.close()
        raise
    reader = runtime.reader(shared=workers > 1)
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
    app.add_middleware(SecurityHeaders)
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


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def check(settings: Settings, runtime: Runtime) -> None:
    """What :func:`create_app` would fail on, tried in the parent of several workers, so that
    a bad configuration stops ``serve`` with its own message before any worker starts."""
    load_hooks(settings.http_hooks_file)
    RateLimits(settings.http_rate_limit)
    runtime.key_store().close()
    runtime.submitter().close()


def worker_app() -> FastAPI:
    """One worker's app (uvicorn's factory, in each process ``serve --workers N`` spawns):
    settings, runtime and services of its own, from the environment the parent set."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        _stop_with_the_supervisor()
        settings = Settings()
        BoundedHttpToolsProtocol.head_timeout_s = settings.http_head_timeout_seconds
        app = create_app(
            settings, bootstrap(settings), host=settings.http_host, workers=settings.http_workers
        )
    except Exception as error:
        # Uvicorn's supervisor stops every worker on this exit status (and would start this
        # one again, without end, on any other); the parent then exits 1.
        what = "" if isinstance(error, OkrLedgerError) else f"{type(error).__name__}: "
        print(f"error: worker {os.getpid()}: {what}{error}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    gc.freeze()  # as serve does: what lives as long as the server, out of the collector's sight
    return app


def _stop_with_the_supervisor() -> None:
    """A worker whose supervisor dies without stopping it (SIGKILL, the OOM killer) would go on
    serving and writing, and hold the port: on Linux the kernel sends it SIGTERM then (a
    graceful stop, as the supervisor's own), and one whose supervisor is gone already exits."""
    supervisor = multiprocessing.parent_process()
    if supervisor is None or sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != supervisor.pid:  # it died before the line above
        sys.exit(0)


def serve(settings: Settings, runtime: Runtime, host: str, port: int, workers: int = 1) -> None:
    """Run the server until SIGINT or SIGTERM (uvloop and httptools when installed), in
    ``workers`` processes (see the module docstring)."""
    import uvicorn

    if workers > 1:
        _serve_workers(settings, runtime, host, port, workers)
        return
    app = create_app(settings, runtime, host=host)
    # Everything loaded so far (FastAPI, pydantic's schemas, the app) lives as long as the
    # server: out of the collector's sight, so its full collections do not rescan it.
    gc.freeze()
    print(f"serving http://{host}:{port}/ on the {runtime.name} runtime", file=sys.stderr)
    BoundedHttpToolsProtocol.head_timeout_s = settings.http_head_timeout_seconds
    uvicorn.run(app, host=host, port=port, **_uvicorn_options(settings))


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's options, whether one process serves or several."""
    return {
        "http": BoundedHttpToolsProtocol,
        "limit_concurrency": settings.http_max_connections,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "server_header": False,
    }


def _serve_workers(settings: Settings, runtime: Runtime, host: str, port: int, n: int) -> None:
    """``n`` processes of :func:`worker_app` under uvicorn's supervisor, on one socket."""
    from uvicorn.config import STARTUP_FAILURE

    check(settings, runtime)
    metrics_dir = tempfile.mkdtemp(prefix="okr-http-metrics-")  # 0700, removed at the end
    try:
        with runtime.serving(n) as shared:
            # The workers are spawned: they read their settings from this environment.
            os.environ.update(
                {MULTIPROC_DIR: metrics_dir, "OKR_HTTP_HOST": host, "OKR_HTTP_WORKERS": str(n)}
                | shared
            )
            supervisor = _supervise(settings, runtime, host, port, n)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        raise ConfigurationError(
            f"worker {failed[0]} did not start (its error is above): every worker was stopped"
        )


def _supervise(
    settings: Settings, runtime: Runtime, host: str, port: int, n: int
) -> "Multiprocess":
    """Run uvicorn's supervisor of ``n`` workers until it stops; the supervisor."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(
        f"{__name__}:worker_app",
        factory=True,
        workers=n,
        host=host,
        port=port,
        **_uvicorn_options(settings),
    )
    socket = config.bind_socket()
    print(
        f"serving http://{host}:{port}/ on the {runtime.name} runtime, {n} worker processes",
        file=sys.stderr,
    )
    supervisor = Multiprocess(config, sockets=[socket])
    try:
        supervisor.run()
    finally:
        socket.close()
    return supervisor
