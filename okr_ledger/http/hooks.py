"""Webhook mappings: a tool's own JSON payload -> a submission, declared in a TOML file.

``OKR_HTTP_HOOKS_FILE`` holds one table per hook; ``POST /v1/hooks/{name}`` applies it::

    [hooks.jira-progress]
    type = "CheckInRecorded"                      # the event type it submits

    [hooks.jira-progress.envelope]                # envelope field = JMESPath expression
    org_id = "'northwind'"                        # a literal: a JMESPath raw string
    occurred_at = "from_epoch_ms(timestamp)"
    actor = "user.accountId"
    source_event_id = "join(':', [issue.key, to_string(timestamp)])"

    [hooks.jira-progress.data]                    # data field = JMESPath expression
    key_result_id = "issue.fields.customfield_10042"
    value = "issue.fields.customfield_10043"

Every expression is JMESPath (the ``jmespath`` library), with two functions added:
``from_epoch_ms(n)`` and ``from_epoch_s(n)`` turn epoch times into RFC 3339 (UTC). The file
is checked when the server starts, and a bad one stops it: an unknown event type, a field that
is not in the envelope or in the type's ``data``, a required field left unmapped, an
expression that does not compile. ``source`` may be left out: the key's source is used.
An expression that finds nothing (or fails on the payload, or finds a value nested too deep
to write) leaves its field out, so the rules reject the submission naming that field.
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jmespath
import orjson
from jmespath import functions
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from schemas.envelope import Submission, format_timestamp
from schemas.errors import ConfigurationError
from schemas.registry import EVENT_TYPES, payload_model

_ENVELOPE_FIELDS = frozenset(Submission.model_fields) - {"type", "data"}
_REQUIRED_ENVELOPE = ("org_id", "occurred_at", "actor")
_HOOK_KEYS = frozenset({"type", "envelope", "data"})


class _Functions(functions.Functions):
    @functions.signature({"types": ["number"]})
    def _func_from_epoch_ms(self, value: float) -> str:
        return format_timestamp(datetime.fromtimestamp(value / 1000, UTC))

    @functions.signature({"types": ["number"]})
    def _func_from_epoch_s(self, value: float) -> str:
        return format_timestamp(datetime.fromtimestamp(value, UTC))


_OPTIONS = jmespath.Options(custom_functions=_Functions())


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    type: str
    envelope: Mapping[str, ParsedResult]
    data: Mapping[str, ParsedResult]

    def submission(self, payload: Any, source: str | None) -> dict[str, Any]:
        """The submission this payload maps to (fields that found nothing left out)."""
        document: dict[str, Any] = {"type": self.type}
        for name, expression in self.envelope.items():
            if (value := _search(expression, payload)) is not None:
                document[name] = value
        if "source" not in self.envelope and source is not None:
            document["source"] = source
        document["data"] = {
            name: value
            for name, expression in self.data.items()
            if (value := _search(expression, payload)) is not None
        }
        return document


def _search(expression: ParsedResult, payload: Any) -> Any:
    try:
        found = expression.search(payload, options=_OPTIONS)
    except (JMESPathError, ValueError, OverflowError, OSError, RecursionError):
        # e.g. from_epoch_ms of a string or of a year out of range; to_string of a value
        # nested deeper than Python's JSON encoder recurses (orjson reads 1,024 levels)
        return None
    if isinstance(found, dict | list):
        try:  # orjson reads 1,024 levels but writes 254: as deep as it sits in a submission
            orjson.dumps([[found]])
        except orjson.JSONEncodeError:
            return None
    return found


def _compile(where: str, text: object) -> ParsedResult:
    if not isinstance(text, str):
        raise ConfigurationError(f"{where}: expected a JMESPath expression (a string)")
    try:
        return jmespath.compile(text)
    except JMESPathError as error:
        raise ConfigurationError(f"{where}: not a JMESPath expression: {error}") from None


def _table(where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a table")
    return value


def parse_hook(name: str, spec: object) -> Hook:
    """One hook's table, checked; :class:`ConfigurationError` names what is wrong."""
    where = f"hooks.{name}"
    table = _table(where, spec)
    unknown = sorted(set(table) - _HOOK_KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {unknown} (known: {sorted(_HOOK_KEYS)})")
    type_name = table.get("type")
    if not isinstance(type_name, str) or type_name not in EVENT_TYPES:
        raise ConfigurationError(f"{where}.type: {type_name!r} is not an event type")
    envelope = _table(f"{where}.envelope", table.get("envelope", {}))
    data = _table(f"{where}.data", table.get("data", {}))
    model = payload_model(type_name)
    for part, fields, known in (
        ("envelope", envelope, _ENVELOPE_FIELDS),
        ("data", data, frozenset(model.model_fields)),
    ):
        wrong = sorted(set(fields) - known)
        if wrong:
            raise ConfigurationError(
                f"{where}.{part}: unknown fields {wrong} (known: {', '.join(sorted(known))})"
            )
    required = [f"envelope.{f}" for f in _REQUIRED_ENVELOPE if f not in envelope]
    if not {"event_id", "source_event_id"} & set(envelope):
        required.append("envelope.source_event_id (or event_id)")
    required += [
        f"data.{f}"
        for f, info in model.model_fields.items()
        if info.is_required() and f not in data
    ]
    if required:
        raise ConfigurationError(f"{where}: required fields not mapped: {', '.join(required)}")
    return Hook(
        name,
        type_name,
        {f: _compile(f"{where}.envelope.{f}", text) for f, text in envelope.items()},
        {f: _compile(f"{where}.data.{f}", text) for f, text in data.items()},
    )


def load_hooks(path: Path | None) -> dict[str, Hook]:
    """Every hook of the file (none without one); :class:`ConfigurationError` if it is bad."""
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"OKR_HTTP_HOOKS_FILE {path}: {error}") from None
    unknown = sorted(set(document) - {"hooks"})
    if unknown:
        raise ConfigurationError(f"OKR_HTTP_HOOKS_FILE {path}: unknown tables {unknown}")
    hooks = _table("hooks", document.get("hooks", {}))
    return {name: parse_hook(name, spec) for name, spec in hooks.items()}
