"""Which event types and versions exist, and how older versions are upcast to the latest.

Events are stored in the ledger exactly as they were accepted, at the version they were
submitted with; readers call :func:`upcast` to see them at the latest version.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from schemas.errors import IncompleteDispatchError, UnknownEventTypeError
from schemas.legacy import CheckInRecordedV1
from schemas.payloads import LATEST_PAYLOADS, Payload

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]
Handler = TypeVar("Handler")


def _check_in_v1_to_v2(data: Data) -> Data:
    upcast = {k: v for k, v in data.items() if k != "confidence_percent"}
    upcast["confidence"] = data["confidence_percent"] / 100.0
    return upcast


_LEGACY: dict[tuple[str, int], type[Payload]] = {("CheckInRecorded", 1): CheckInRecordedV1}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {("CheckInRecorded", 1): _check_in_v1_to_v2}
_LATEST_VERSION_OVERRIDES = {"CheckInRecorded": 2}

EVENT_TYPES: Mapping[str, int] = MappingProxyType(
    {m.type_name: _LATEST_VERSION_OVERRIDES.get(m.type_name, 1) for m in LATEST_PAYLOADS}
)
"""Every event type of the contract, with its latest schema version."""

_LATEST: dict[str, type[Payload]] = {m.type_name: m for m in LATEST_PAYLOADS}


def latest_version(type_name: str) -> int:
    try:
        return EVENT_TYPES[type_name]
    except KeyError:
        raise UnknownEventTypeError(f"unknown event type {type_name!r}") from None


def versions(type_name: str) -> list[int]:
    """All versions of a type, oldest first."""
    return list(range(1, latest_version(type_name) + 1))


def payload_model(type_name: str, version: int | None = None) -> type[Payload]:
    """The payload model of ``type_name`` at ``version`` (latest when None)."""
    latest = latest_version(type_name)
    if version is None or version == latest:
        return _LATEST[type_name]
    legacy = _LEGACY.get((type_name, version))
    if legacy is None:
        raise UnknownEventTypeError(
            f"{type_name} has no schema_version {version} (versions 1 to {latest})"
        )
    return legacy


def upcast(type_name: str, version: int, data: Data) -> Data:
    """Turn ``data`` recorded at ``version`` into the latest version's shape."""
    latest = latest_version(type_name)
    while version < latest:
        data = _UPCASTERS[(type_name, version)](data)
        version += 1
    return data


_CONSUMERS: dict[str, Mapping[str, Any]] = {}


def dispatch_table(consumer: str, handlers: Mapping[str, Handler]) -> Mapping[str, Handler]:
    """``handlers`` (event type -> handler) of ``consumer``, checked to name exactly the types of
    :data:`EVENT_TYPES`, and registered under ``consumer`` (see :func:`consumers`).

    Every module that dispatches on the event type builds its table with this, so a type added
    to the contract fails at import in every consumer that does not handle it (a type a
    consumer deliberately ignores is registered with a handler that does nothing).
    """
    missing = sorted(EVENT_TYPES.keys() - handlers.keys())
    unknown = sorted(handlers.keys() - EVENT_TYPES.keys())
    if missing or unknown:
        raise IncompleteDispatchError(
            f"{consumer}: no handler for {missing or 'none'}; handlers of unknown types "
            f"{unknown or 'none'}"
        )
    table = MappingProxyType(dict(handlers))
    _CONSUMERS[consumer] = table
    return table


def consumers() -> Mapping[str, Mapping[str, Any]]:
    """Every dispatch table built so far, by consumer (those whose modules are imported)."""
    return MappingProxyType(_CONSUMERS)
