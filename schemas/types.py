"""Constrained field types shared by the envelope and the payloads."""

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"),
]
"""An id chosen by the source: org, unit, theme, objective, key result..."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000, strip_whitespace=True)]
ExternalRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Unit = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True)]

# Python's json module accepts NaN and Infinity; the contract does not.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Weight = Annotated[float, Field(allow_inf_nan=False)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("ids must be unique")
    return values


IdList = Annotated[list[Identifier], Field(max_length=50), AfterValidator(_unique)]
