"""A small Python client for source systems: submit events, get each one's outcome.

It works on either runtime, chosen by URL as everywhere else: ``sqlite:///...`` submits to the
embedded ledger in-process; ``kafka://host:port`` produces to the intake topic and waits for
the worker's answer (a worker must be running: ``okr-ledger worker``)::

    with LedgerClient.from_settings() as ledger:
        outcome = ledger.submit({"event_id": ..., "org_id": "acme", "type": ..., ...})
        if not outcome.ok:
            print(outcome.reason_code, outcome.message)

Submitting the same event again is safe: it comes back ``duplicate``.
"""

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import orjson

from okr_ledger.runtime import Submitter
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from okr_ledger.wiring import bootstrap

Event = Mapping[str, Any] | bytes
"""A submission: a JSON object, or its JSON bytes as they are."""


def _encode(event: Event) -> bytes:
    return event if isinstance(event, bytes) else orjson.dumps(dict(event))


class LedgerClient:
    """Submits events to the ledger at ``url`` (default: ``OKR_LEDGER_URL``). Not thread-safe."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        if url is not None:
            settings = settings.model_copy(update={"ledger_url": url})
        self.url = settings.resolved_ledger_url
        self._submitter: Submitter = bootstrap(settings).submitter()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "LedgerClient":
        """The ledger the ``OKR_*`` settings (environment or ``.env``) name."""
        return cls(settings=settings)

    def submit(self, event: Event) -> SubmitOutcome:
        """Submit one event; its outcome: accepted, duplicate or rejected (with a reason)."""
        (outcome,) = self.submit_many([event])
        return outcome

    def submit_many(self, events: Iterable[Event]) -> list[SubmitOutcome]:
        """Submit events in order; one outcome each, in the same order."""
        return list(self._submitter.submit_many((_encode(e), None) for e in events))

    def close(self) -> None:
        self._submitter.close()

    def __enter__(self) -> "LedgerClient":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
