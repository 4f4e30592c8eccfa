"""The audit row of an event: every event, as recorded, with what it is about and whom it names."""

from collections.abc import Mapping
from functools import cache
from typing import Any

import orjson

from processors.tables import Row
from schemas.registry import payload_model

Data = dict[str, Any]


@cache
def _shape(event_type: str) -> tuple[str, str | None, tuple[str, ...], tuple[str, ...]]:
    """(subject kind, the field naming the subject, the fields holding one id (``*_id``), the
    fields holding several (``*_ids``)) of an event type's payload."""
    model = payload_model(event_type)
    subject = model.subject_field
    kind = subject.removesuffix("_id") if subject else None
    if kind is None:
        kind = "strategy" if event_type.startswith("Strategy") else "org"
    names = model.model_fields
    return (
        kind,
        subject,
        tuple(name for name in names if name.endswith("_id")),
        tuple(name for name in names if name.endswith("_ids")),
    )


def related_ids(event_type: str, data: Data) -> list[str]:
    """Every id the event names, sorted: its ``*_id`` fields and the members of ``*_ids``."""
    _kind, _subject, single, several = _shape(event_type)
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
    plan = _PLANS.get(event_type)
    if plan is None:
        kind, field_name, single, several = _shape(event_type)
        plan = _PLANS[event_type] = (kind, field_name, bool(several or single != (field_name,)))
    kind, field_name, names_others = plan
    named = None if field_name is None else data.get(field_name)
    if names_others:
        subject = "" if named is None else str(named)
        related = related_ids(event_type, data)
    elif isinstance(named, str):  # the subject is the only id it names (check-ins...)
        subject, related = named, [named]
    else:
        subject, related = "" if named is None else str(named), []
    get = record.get
    return (
        record["org_id"], record["sequence"], record["event_id"], event_type,
        record["schema_version"], occurred, recorded, record["actor"], record["source"],
        get("source_event_id"), get("correlation_id"), get("causation_id"), kind, subject,
        related,
        # Decoded: a str of the exact size (orjson's bytes keep a 4 KiB buffer each).
        orjson.dumps(record["data"], option=orjson.OPT_SORT_KEYS).decode(),
        record["prev_hash"], record["hash"],
    )  # fmt: skip


_PLANS: dict[str, tuple[str, str | None, bool]] = {}
"""Event type -> (subject kind, the field naming the subject, whether it names other ids)."""
