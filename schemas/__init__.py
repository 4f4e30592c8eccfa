"""The public event contract: envelope, event payloads, versions, upcasting, JSON Schema.

This package imports nothing else of the project; every other layer may import it.
"""

from schemas.envelope import LedgerEvent, Submission, derive_event_id
from schemas.errors import OkrLedgerError
from schemas.registry import EVENT_TYPES, latest_version, payload_model

__all__ = [
    "EVENT_TYPES",
    "LedgerEvent",
    "OkrLedgerError",
    "Submission",
    "derive_event_id",
    "latest_version",
    "payload_model",
]
