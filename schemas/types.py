"""Constrained field types shared by the envelope and the payloads."""

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    GetPydanticSchema,
    Strict,
    StringConstraints,
)
from pydantic_core import core_schema

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"),
]
"""An id chosen by the source: org, unit, theme, objective, key result..."""

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=_NO_CONTROL),
]
Title = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
ExternalRef = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_CONTROL)]
Unit = Annotated[str, StringConstraints(min_length=0, max_length=50, strip_whitespace=True)]
"""A key result's unit: may be empty (milestones, counts)."""

# Python's json module accepts NaN and Infinity; the contract does not. Numbers are strict, as
# in the JSON Schema: an integer is a number, but "30" and true are not (no silent coercion).
FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Weight = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Confidence = Annotated[float, Strict(), Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Strict()]
"""An integer that must be a JSON integer (not 2.0, "2" or true)."""

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not (isinstance(value, str) and _RFC3339.match(value)):
        raise ValueError(
            "expected an RFC 3339 timestamp with an offset, e.g. 2026-11-02T09:00:00+01:00 "
            "(at most 6 fractional digits)"
        )
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not (isinstance(value, str) and _ISO_DATE.match(value)):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""RFC 3339 with an offset, as a string (no epoch numbers, no space for T)."""
CheckedTimestamp = Annotated[
    datetime,
    GetPydanticSchema(
        lambda _type, _handler: core_schema.chain_schema(
            [
                core_schema.str_schema(pattern=_RFC3339.pattern),
                core_schema.datetime_schema(tz_constraint="aware"),
            ]
        )
    ),
]
"""A :data:`Timestamp` checked by pydantic-core alone, without a call into Python: only text
that :data:`Timestamp` accepts (its pattern, then the same parser), read to the same instant,
but with errors of its own. For a validation that, when it fails, is done again with
:data:`Timestamp` to name the errors (``events.sequencer``)."""
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
"""A calendar date as YYYY-MM-DD."""


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("ids must be unique")
    return values


IdList = Annotated[list[Identifier], Field(max_length=50), AfterValidator(_unique)]
