"""Older versions of event payloads, kept so that events recorded under them stay readable.

A version lives here once a newer one replaces it in ``schemas.payloads``; its upcaster in
``schemas.registry`` turns its data into the next version's.
"""

from pydantic import Field

from schemas.payloads import Payload
from schemas.types import FiniteFloat, Identifier, Text


class CheckInRecordedV1(Payload):
    """``CheckInRecorded`` v1 (until 0.1): confidence as a percentage, 0 to 100."""

    type_name = "CheckInRecorded"
    subject_field = "key_result_id"
    key_result_id: Identifier
    value: FiniteFloat
    confidence_percent: float = Field(ge=0.0, le=100.0, allow_inf_nan=False)
    comment: Text | None = None
