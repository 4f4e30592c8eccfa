"""The audit row of an event: every event, as recorded, with what it is about and whom it names."""

from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson

from processors.tables import Row
from schemas.registry import payload_model

Data = dict[str, Any]


@cache
def subject_of(event_type: str) -> tuple[str, str | None]:
    """(subject kind, the payload field naming the subject) of an event type."""
    field_name = payload_model(event_type).subject_field
    if field_name is None:
        return ("strategy" if event_type.startswith("Strategy") else "org"), None
    return field_name.removesuffix("_id"), field_name


@cache
def _id_fields(event_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The payload fields of a type that hold one id (``*_id``) or several (``*_ids``)."""
    names = payload_model(event_type).model_fields
    return (
        tuple(name for name in names if name.endswith("_id")),
        tuple(name for name in names if name.endswith("_ids")),
    )


def related_ids(event_type: str, data: Data) -> list[str]:
    """Every id the event names, sorted: its ``*_id`` fields and the members of ``*_ids``."""
    single, several = _id_fields(event_type)
    found: set[str] = set()
    for key in single:
        value = data.get(key)
        if isinstance(value, str):
            found.add(value)
    for key in several:
        values = data.get(key)
        if isinstance(values, list):
            found.update(v for v in values if isinstance(v, str))
    return sorted(found)


def audit_row(record: Mapping[str, Any], data: Data, occurred: int, recorded: int) -> Row:
    """``record`` is the event as stored; ``data`` its payload upcast to the latest version."""
    event_type = record["type"]
    kind, field_name = subject_of(event_type)
    return (
        record["org_id"],
        record["sequence"],
        record["event_id"],
        event_type,
        record["schema_version"],
        occurred,
        recorded,
        record["actor"],
        record["source"],
        record.get("source_event_id"),
        record.get("correlation_id"),
        record.get("causation_id"),
        kind,
        "" if field_name is None else str(data.get(field_name, "")),
        related_ids(event_type, data),
        orjson.dumps(record["data"], option=orjson.OPT_SORT_KEYS).decode(),
        record["prev_hash"],
        record["hash"],
    )
