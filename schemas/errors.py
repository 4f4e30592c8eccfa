"""The project's exceptions, all under one root so callers can catch ``OkrLedgerError``."""


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


class LedgerError(OkrLedgerError):
    """The event log refused an operation."""


class SequenceConflictError(LedgerError):
    """An append did not continue an org's sequence (another writer, or a stale state)."""


class LedgerUnavailableError(LedgerError):
    """The event log cannot be reached or opened."""


class ProjectionError(OkrLedgerError):
    """The projection store refused an operation."""


class ProjectionUnavailableError(ProjectionError):
    """The projection store cannot be reached or opened (or another process holds it)."""


class ProjectionQueryError(ProjectionError):
    """A query on the projections failed (bad SQL, or a write in read-only mode)."""


class QueryRefusedError(ProjectionQueryError):
    """Read-only SQL refused a statement (a write, a file, a setting...); nothing ran."""
