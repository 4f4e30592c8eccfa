"""The project's exceptions, all under one root so callers can catch ``OkrLedgerError``."""

import difflib
from collections.abc import Iterable


class OkrLedgerError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigurationError(OkrLedgerError):
    """A setting or URL cannot be used (unknown scheme, malformed URL)."""


class MissingExtraError(ConfigurationError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'okr-ledger[{extra}]'"
        )
        self.package = package
        self.extra = extra


class UnknownEventTypeError(OkrLedgerError):
    """An event type, or a version of it, is not part of the contract."""


class IncompleteDispatchError(OkrLedgerError):
    """A consumer of events (the rules, the sequencer's state, the projector) does not handle
    exactly the event types of the contract: a programming error, raised when it is imported."""


class LedgerError(OkrLedgerError):
    """The event log refused an operation."""


class SequenceConflictError(LedgerError):
    """An append did not continue an org's sequence (another writer, or a stale state)."""


class LedgerUnavailableError(LedgerError):
    """The event log cannot be reached or opened."""


class WriterFencedError(LedgerUnavailableError):
    """A writer's partition went to another worker: the broker refused its writes (its
    transactional id was initialised again by the new owner)."""


class LedgerDamagedError(LedgerError):
    """What is stored is not what the ledger wrote (a malformed event, or index columns that
    contradict the events): ``okr-ledger verify`` names the event."""


class ProjectionError(OkrLedgerError):
    """The projection store refused an operation."""

    store: str | None = None
    """The description of the store whose statement failed (``ProjectionStore.description``),
    when a store raised it: which one, where a command uses two (``rebuild``)."""


class ProjectionUnavailableError(ProjectionError):
    """The projection store cannot be reached or opened (or another process holds it)."""


class CredentialRefusedError(ProjectionUnavailableError):
    """The store answered, and refused this process's credential."""


class ProjectionQueryError(ProjectionError):
    """A query on the projections failed (bad SQL, or a write in read-only mode)."""


class UnusableSnapshotError(ProjectionError):
    """A projector snapshot cannot be used (unreadable, another format or org, inconsistent):
    the runner ignores it and replays the ledger instead."""


class UnknownNameError(OkrLedgerError):
    """A command named an org, subject, unit or period that the ledger does not have.

    ``suggestions`` are the known names closest to it (``difflib``), best first; the CLI exits
    with its own code (5), so a typo never looks like an empty answer.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str] = ()) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = difflib.get_close_matches(name, sorted(set(known)), n=3)
        hint = " or ".join(repr(s) for s in self.suggestions)
        super().__init__(f"unknown {kind} {name!r}" + (f"; did you mean {hint}?" if hint else ""))


class QueryRefusedError(ProjectionQueryError):
    """Read-only SQL refused a statement (a write, a file, a setting...); nothing ran."""
