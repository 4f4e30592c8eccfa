"""Reason codes: every rejection carries exactly one."""

from enum import StrEnum


class ReasonCode(StrEnum):
    INVALID_JSON = "invalid_json"
    """Not a JSON object (malformed, NaN or Infinity, not UTF-8), or one that repeats a key."""
    TOO_LARGE = "too_large"
    """Over the size limit (64 KiB by default)."""
    SCHEMA_VIOLATION = "schema_violation"
    """The envelope or data does not match the contract; ``details`` lists the fields."""
    UNKNOWN_TYPE = "unknown_type"
    """``type`` is not an event type of the contract."""
    CONFLICT = "conflict"
    """A known ``event_id`` submitted again with other content."""
    UNKNOWN_REFERENCE = "unknown_reference"
    """Names an entity (theme, unit, period, objective, key result...) that does not exist."""
    ALREADY_EXISTS = "already_exists"
    """Creates an entity whose id is taken (under another event_id)."""
    INVALID_STATE = "invalid_state"
    """The entity's lifecycle forbids it: retired, abandoned, closed."""
    INVALID_DEFINITION = "invalid_definition"
    """Internally inconsistent: target on the wrong side of start, weight not positive..."""
    CYCLE = "cycle"
    """A vertical alignment that would make an objective its own ancestor."""
    CLOCK_SKEW = "clock_skew"
    """``occurred_at`` is further in the future than the allowed skew."""
    FORBIDDEN = "forbidden"
    """The HTTP API refused it: its key may not send for this org, source or event type."""
    INVALID_RECORD = "invalid_record"
    """The Kafka intake record around the submission is malformed (key, partition, headers,
    unreadable), or deciding it failed unexpectedly; the submission itself was not judged."""
