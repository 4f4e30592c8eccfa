"""Older versions of event payloads, kept so that events recorded under them stay readable.

A version lives here once a newer one replaces it in ``schemas.payloads``; its upcaster in
``schemas.registry`` turns its data into the next version's.
"""

from typing import Annotated

from pydantic import Field, Strict

from schemas.payloads import Payload
from schemas.types import FiniteFloat, Identifier, Text


class CheckInRecordedV1(Payload):
    """CheckInRecorded v1: confidence as a percentage, 0 to 100 (v2: a fraction, 0 to 1)."""

    type_name = "CheckInRecorded"
    subject_field = "key_result_id"
    key_result_id: Identifier
    value: FiniteFloat
    confidence_percent: Annotated[float, Strict(), Field(ge=0.0, le=100.0, allow_inf_nan=False)]
    comment: Text | None = None
