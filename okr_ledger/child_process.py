"""What this process and a child it starts with its settings (``python -m MODULE``) exchange:
the settings as JSON through a pipe, and an error back as its own class."""

import orjson
from pydantic import SecretStr

from okr_ledger.settings import Settings
from schemas import errors
from schemas.errors import OkrLedgerError, ProjectionError


def settings_json(settings: Settings) -> bytes:
    """``settings`` as JSON, its secrets in clear (``model_dump`` masks them): for a child
    process only, through a pipe."""
    fields = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            fields[name] = value.get_secret_value()
    return orjson.dumps(fields)


def child_error(kind: str, message: str) -> OkrLedgerError:
    """A child's error again: its class if it is one of :mod:`schemas.errors`, else a
    :class:`ProjectionError` with its message."""
    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, OkrLedgerError):
        return found(message)
    return ProjectionError(message)
