"""The composition root: settings in, adapters out. Backends are chosen by URL scheme."""

from collections.abc import Callable
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from events.ledger import Ledger
from events.log import EventLog
from okr_ledger.settings import Settings
from schemas.errors import ConfigurationError, MissingExtraError

LEDGER_BACKENDS: dict[str, tuple[str, str]] = {
    "sqlite": ("events.sqlite_log:SqliteEventLog", "core"),
}
"""URL scheme -> (``module:class`` with a ``from_url`` constructor, extra that provides it)."""


def _load(target: str, extra: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as error:
        raise MissingExtraError(error.name or module_name, extra) from error
    factory: Callable[..., Any] = getattr(module, attribute)
    return factory


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise ConfigurationError(f"{url!r} is not a URL (expected scheme://...)")
    return scheme


def open_event_log(settings: Settings) -> EventLog:
    url = settings.resolved_ledger_url
    scheme = scheme_of(url)
    if scheme not in LEDGER_BACKENDS:
        known = ", ".join(f"{s}://" for s in LEDGER_BACKENDS)
        raise ConfigurationError(f"OKR_LEDGER_URL {url!r}: unknown scheme (known: {known})")
    target, extra = LEDGER_BACKENDS[scheme]
    log: EventLog = _load(target, extra).from_url(url)  # type: ignore[attr-defined]
    return log


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(
        open_event_log(settings), policy=settings.policy, batch_size=settings.submit_batch_size
    )
