"""The composition root: settings in, adapters out. Backends are chosen by URL scheme."""

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from events.ledger import Ledger
from events.log import EventLog
from okr_ledger.settings import Settings
from schemas.errors import ConfigurationError, MissingExtraError

if TYPE_CHECKING:  # the projection side is imported only by the commands that use it
    from okr_ledger.runtime import Runtime
    from projections.store import ProjectionStore

LEDGER_BACKENDS: dict[str, tuple[str, str]] = {
    "sqlite": ("events.sqlite_log:SqliteEventLog", "core"),
    "kafka": ("events.kafka_log:KafkaEventLog", "kafka"),
}
"""URL scheme -> (``module:class`` with a ``from_url`` constructor, extra that provides it)."""


def _kafka_options(settings: Settings) -> dict[str, Any]:
    return {
        "ledger_topic": settings.kafka_topic_ledger,
        "rejections_topic": settings.kafka_topic_rejections,
    }


def _sqlite_options(settings: Settings) -> dict[str, Any]:
    return {
        "verify_processes": settings.verify_processes,
        "verify_range_events": settings.verify_range_events,
    }


LEDGER_OPTIONS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "kafka": _kafka_options,
    "sqlite": _sqlite_options,
}
"""URL scheme -> the keyword arguments its ``from_url`` takes from the settings."""

_PACKAGES = {"kafka": "kafka-python"}
"""Importable module -> the distribution that provides it, where the names differ."""


def _load(target: str, extra: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or module_name).partition(".")[0]
        raise MissingExtraError(_PACKAGES.get(missing, missing), extra) from error
    factory: Callable[..., Any] = getattr(module, attribute)
    return factory


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(f"{url!r} is not a URL (expected scheme://...)")
    return scheme


def _backend(registry: dict[str, tuple[str, str]], setting: str, url: str) -> Any:
    """The ``module:class`` registered for ``url``'s scheme, imported (lazily: extras)."""
    scheme = scheme_of(url)
    if scheme not in registry:
        known = ", ".join(f"{s}://" for s in registry)
        raise ConfigurationError(f"{setting} {url!r}: unknown scheme (known: {known})")
    target, extra = registry[scheme]
    return _load(target, extra)


def open_event_log(settings: Settings, *, create: bool = True, read_only: bool = False) -> EventLog:
    """The event log of ``OKR_LEDGER_URL``; with ``create=False`` a missing one is an error,
    ``read_only`` opens it for reading only (also a read-only copy of the data directory)."""
    url = settings.resolved_ledger_url
    scheme = scheme_of(url)
    options = LEDGER_OPTIONS[scheme](settings) if scheme in LEDGER_OPTIONS else {}
    log: EventLog = _backend(LEDGER_BACKENDS, "OKR_LEDGER_URL", url).from_url(
        url, create=create, read_only=read_only, **options
    )
    return log


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(
        open_event_log(settings),
        policy=settings.policy,
        batch_size=settings.submit_batch_size,
        batch_bytes=settings.submit_batch_bytes,
    )


PROJECTION_BACKENDS: dict[str, tuple[str, str]] = {
    "chdb": ("projections.store:ProjectionStore", "embedded"),
    "http": ("projections.store:ProjectionStore", "clickhouse"),
    "https": ("projections.store:ProjectionStore", "clickhouse"),
}
"""URL scheme -> (``module:class`` with an ``open(url)`` constructor, extra that provides it)."""


def open_projection_store(settings: Settings, migrate: bool = True) -> "ProjectionStore":
    """The projection store of ``OKR_CLICKHOUSE_URL``, its migrations applied (first use)."""
    url = settings.resolved_clickhouse_url
    store: ProjectionStore = _backend(PROJECTION_BACKENDS, "OKR_CLICKHOUSE_URL", url).open(
        url, migrate=migrate, release_load_pages=settings.chdb_release_load_pages
    )
    return store


RUNTIMES: dict[str, tuple[str, str]] = {
    "sqlite": ("okr_ledger.embedded_runtime:EmbeddedRuntime", "core"),
    "kafka": ("okr_ledger.kafka_runtime:KafkaRuntime", "kafka"),
}
"""``OKR_LEDGER_URL`` scheme -> (``module:class`` taking the settings, extra that provides it)."""


def bootstrap(settings: Settings | None = None) -> "Runtime":
    """The runtime of ``OKR_LEDGER_URL``: the one place that chooses embedded or Kafka."""
    settings = settings or Settings()
    url = settings.resolved_ledger_url
    runtime: Runtime = _backend(RUNTIMES, "OKR_LEDGER_URL", url)(settings)
    return runtime
