"""The Kafka intake wire format: what a submitter produces, what the worker answers, and the
header that ties a ledger event or rejection back to its intake record.

Both sides use this module: the submitters (``okr_ledger/kafka_submit.py``, the Python client)
to build intake records and read outcomes, the worker (``processors/kafka_sequencer.py``) to
read intake records and write outcomes. Everything read from a topic is parsed here with
explicit bounds and never raises: a bad part becomes a *problem* (``{"loc", "msg"}``, the shape
of a rejection's details) or, for records the system wrote itself, ``None``.

**An intake record** (docs/ARCHITECTURE.md, "Intake records"):

- key: the submission's ``org_id`` in UTF-8 (Kafka's default partitioner then picks the
  partition); no key when the submission has no readable ``org_id``, and on a stand-in (the
  worker rejects a record whose key is not the ``org_id`` it carries);
- value: the submitted bytes, at most :data:`INTAKE_VALUE_LIMIT`; a longer line is sent as a
  *stand-in*: its first :data:`~events.outcomes.RAW_LIMIT` bytes with the
  ``okr-raw-length`` and ``okr-raw-sha256`` headers of the whole line, which the worker records
  as a ``too_large`` rejection with those figures;
- headers (all optional, each at most once): ``okr-submission-id`` (echoed in the outcome,
  which it keys), ``okr-line`` (the line number in the submitted file), the stand-in's two,
  and a *refusal*'s two: ``okr-refusal`` (a reason code of :data:`REFUSABLE`) and
  ``okr-refusal-message``, with which the HTTP API has the worker record a submission it
  refused (a key's forbidden org, source or type; a payload for no hook) as that rejection,
  never deciding it.
  Other headers are ignored, within :data:`MAX_HEADERS` and :data:`MAX_HEADER_BYTES`.
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from events.kafka_records import bounded_details, bounded_message
from events.outcomes import RAW_LIMIT, Outcome, Rejection
from events.reasons import ReasonCode

SUBMISSION_HEADER = "okr-submission-id"
LINE_HEADER = "okr-line"
LENGTH_HEADER = "okr-raw-length"
"""On a stand-in: the length of the whole line, in bytes (decimal)."""
SHA256_HEADER = "okr-raw-sha256"
"""On a stand-in: the SHA-256 of the whole line (64 lowercase hex digits)."""
REFUSAL_HEADER = "okr-refusal"
"""On a refused submission: the reason code to record it under (one of :data:`REFUSABLE`)."""
REFUSAL_MESSAGE_HEADER = "okr-refusal-message"
"""On a refused submission: why, in 1 to :data:`MAX_REFUSAL_MESSAGE_BYTES` bytes of UTF-8."""
REFUSABLE = frozenset({ReasonCode.FORBIDDEN, ReasonCode.UNKNOWN_HOOK})
"""The reasons a submitter may have a submission recorded under without its being decided."""
MAX_REFUSAL_MESSAGE_BYTES = 1000
INTAKE_HEADER = "okr-intake"
"""On ledger events and rejections: ``partition/offset/batch_start`` of the intake record."""
OWN_HEADERS = (
    SUBMISSION_HEADER,
    LINE_HEADER,
    LENGTH_HEADER,
    SHA256_HEADER,
    REFUSAL_HEADER,
    REFUSAL_MESSAGE_HEADER,
)
"""The intake headers the worker reads; any other header of an intake record is ignored."""

INTAKE_VALUE_LIMIT = 1_000_000
"""The largest value a submitter produces as it is. Kafka's default ``max.message.bytes`` is
1 MiB (1,048,588 bytes with the batch overhead), so a longer line could not be produced at
all; it goes as a stand-in instead."""
MAX_HEADERS = 32
MAX_HEADER_BYTES = 16 * 1024
"""Names and values of all of a record's headers together."""
MAX_SUBMISSION_ID_BYTES = 128
MAX_LINE_DIGITS = 12
"""``okr-line``: at most 12 decimal digits (a line number below one trillion)."""
MAX_CLAIMED_LENGTH = 1 << 40
"""The largest whole-line length a stand-in may claim (1 TiB)."""
MAX_OUTCOME_BYTES = 4 * 1024 * 1024
"""An outcome record longer than this is not one the worker wrote."""

Headers = Sequence[tuple[str, bytes | None]]
Detail = dict[str, str]

_LINE = re.compile(rb"[0-9]{1,%d}" % MAX_LINE_DIGITS)
_LENGTH = re.compile(rb"[0-9]{1,13}")
_SHA256 = re.compile(rb"[0-9a-f]{64}")
_ORIGIN = re.compile(rb"([0-9]{1,10})/([0-9]{1,19})/([0-9]{1,19})")
_INT64 = 1 << 63


@dataclass(frozen=True, slots=True)
class StandIn:
    """A line too long for intake, described by its length and SHA-256."""

    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A submission the submitter refused: record it under ``reason``, do not decide it.
    ``message`` is kept to :data:`MAX_REFUSAL_MESSAGE_BYTES` of UTF-8 (what its header
    carries), on every runtime."""

    reason: ReasonCode
    message: str

    def __post_init__(self) -> None:
        kept = self.message.encode()[:MAX_REFUSAL_MESSAGE_BYTES].decode("utf-8", "ignore")
        object.__setattr__(self, "message", kept)


@dataclass(frozen=True, slots=True)
class Intake:
    """The parsed key and headers of one intake record."""

    submission_id: str | None = None
    line: int | None = None
    stand_in: StandIn | None = None
    refusal: Refusal | None = None
    problems: tuple[Detail, ...] = ()
    """What is wrong with the record's framing; any problem makes it ``invalid_record``."""


_PLAIN = Intake()
"""The intake of a record with none of the worker's headers (shared: it is frozen)."""


def _problem(loc: str, msg: str) -> Detail:
    return {"loc": loc, "msg": msg}


def _shown(value: bytes, limit: int = 40) -> str:
    """A short, safe rendering of untrusted bytes for a message."""
    text = repr(value[:limit])
    return text + "..." if len(value) > limit else text


def parse_intake(value: bytes, headers: Headers, max_bytes: int) -> Intake:
    """Parse an intake record's headers with bounds; never raises. ``max_bytes``: the
    sequencer's submission limit (a stand-in must claim a line over it)."""
    problems: list[Detail] = []
    size = 0
    found: dict[str, bytes | None] = {}
    repeated: dict[str, int] = {}
    for name, header_value in headers:
        size += len(name.encode("utf-8", "surrogatepass")) + len(header_value or b"")
        if name in OWN_HEADERS:
            if name in found:
                repeated[name] = repeated.get(name, 1) + 1
            found[name] = header_value
    if len(headers) > MAX_HEADERS:
        problems.append(_problem("headers", f"{len(headers)} headers, over {MAX_HEADERS}"))
    if size > MAX_HEADER_BYTES:
        problems.append(_problem("headers", f"{size} bytes of headers, over {MAX_HEADER_BYTES}"))
    if not found and not problems:
        return _PLAIN  # none of the worker's headers (a producer of its own): nothing to read
    own: dict[str, bytes] = {}
    for name, header_value in found.items():
        if name in repeated:
            problems.append(_problem(f"headers.{name}", f"given {repeated[name]} times, not once"))
        elif header_value is None:
            problems.append(_problem(f"headers.{name}", "has no value"))
        else:
            own[name] = header_value
    submission_id = _submission_id(own.get(SUBMISSION_HEADER), problems)
    line = _line(own.get(LINE_HEADER), problems)
    length, sha256 = own.get(LENGTH_HEADER), own.get(SHA256_HEADER)
    stand_in = _stand_in(length, sha256, value, max_bytes, problems)
    refusal = _refusal(own.get(REFUSAL_HEADER), own.get(REFUSAL_MESSAGE_HEADER), problems)
    return Intake(submission_id, line, stand_in, refusal, tuple(problems))


def _refusal(reason: bytes | None, message: bytes | None, problems: list[Detail]) -> Refusal | None:
    """A refusal's claim: a refusable reason code and a short UTF-8 message, both or neither."""
    if reason is None and message is None:
        return None
    if reason is None or message is None:
        missing = REFUSAL_HEADER if reason is None else REFUSAL_MESSAGE_HEADER
        problems.append(_problem(f"headers.{missing}", "a refusal needs both of its headers"))
        return None
    found = len(problems)
    code = next((r for r in REFUSABLE if r.value.encode() == reason), None)
    if code is None:
        allowed = ", ".join(sorted(REFUSABLE))
        problems.append(
            _problem(f"headers.{REFUSAL_HEADER}", f"must be {allowed}, not {_shown(reason)}")
        )
    text = None
    if not 0 < len(message) <= MAX_REFUSAL_MESSAGE_BYTES:
        problems.append(
            _problem(
                f"headers.{REFUSAL_MESSAGE_HEADER}",
                f"must be 1 to {MAX_REFUSAL_MESSAGE_BYTES} bytes",
            )
        )
    else:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(
                _problem(f"headers.{REFUSAL_MESSAGE_HEADER}", f"is not UTF-8: {_shown(message)}")
            )
    if len(problems) > found or code is None or text is None:
        return None
    return Refusal(code, text)


def _submission_id(value: bytes | None, problems: list[Detail]) -> str | None:
    if value is None:
        return None
    loc = f"headers.{SUBMISSION_HEADER}"
    if not 0 < len(value) <= MAX_SUBMISSION_ID_BYTES:
        problems.append(_problem(loc, f"must be 1 to {MAX_SUBMISSION_ID_BYTES} bytes"))
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(_problem(loc, f"is not UTF-8: {_shown(value)}"))
        return None


def _line(value: bytes | None, problems: list[Detail]) -> int | None:
    if value is None:
        return None
    if _LINE.fullmatch(value) is None:
        message = f"must be a line number of at most {MAX_LINE_DIGITS} digits, not {_shown(value)}"
        problems.append(_problem(f"headers.{LINE_HEADER}", message))
        return None
    return int(value)


def _stand_in(
    length: bytes | None,
    sha256: bytes | None,
    value: bytes,
    max_bytes: int,
    problems: list[Detail],
) -> StandIn | None:
    """A stand-in's claim, if it is one that could be true: a line over the limit, described
    by a well-formed length and hash, of which ``value`` is the first bytes."""
    if length is None and sha256 is None:
        return None
    found = len(problems)
    if length is None or sha256 is None:
        missing = LENGTH_HEADER if length is None else SHA256_HEADER
        problems.append(_problem(f"headers.{missing}", "a stand-in needs both of its headers"))
        return None
    claimed = int(length) if _LENGTH.fullmatch(length) else -1
    if not max_bytes < claimed <= MAX_CLAIMED_LENGTH:
        problems.append(
            _problem(
                f"headers.{LENGTH_HEADER}",
                f"must be a length over the limit of {max_bytes} bytes and at most "
                f"{MAX_CLAIMED_LENGTH}, not {_shown(length)}",
            )
        )
    if _SHA256.fullmatch(sha256) is None:
        message = f"must be 64 lowercase hex digits, not {_shown(sha256)}"
        problems.append(_problem(f"headers.{SHA256_HEADER}", message))
    elif claimed > 0:
        whole = len(value) == claimed
        if len(value) != min(claimed, RAW_LIMIT):
            message = f"must be the line's first {min(claimed, RAW_LIMIT)} bytes, not {len(value)}"
            problems.append(_problem("value", message))
        elif whole and hashlib.sha256(value).hexdigest().encode() != sha256:
            problems.append(_problem(f"headers.{SHA256_HEADER}", "is not the value's SHA-256"))
    if len(problems) > found:
        return None
    return StandIn(claimed, sha256.decode("ascii"))


def identify(value: bytes, limit: int) -> dict[str, str]:
    """What a submission of at most ``limit`` bytes says it is (``org_id``, ``event_id``,
    ``type``, ``source``, each cut to 200 characters), as far as it can be read: how a
    rejection that was not decided by the rules is identified."""
    if len(value) > limit:
        return {}
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        key: text[:200]
        for key in ("org_id", "event_id", "type", "source")
        if isinstance(text := document.get(key), str)
    }


NOT_SUBMISSIONS = frozenset({ReasonCode.UNKNOWN_HOOK})
"""Refusals of a body that is not a submission (a tool's own payload): its ``org_id``,
``type``... are not claims of the sender's, so the rejection is filed under none."""


def refused(
    value: bytes,
    refusal: Refusal,
    recorded_at: str,
    line: int | None,
    limit: int,
    *,
    stand_in: StandIn | None = None,
) -> Rejection:
    """The rejection that records a refused submission (``value``; of a ``stand_in``, its
    first bytes, with the whole one's length and SHA-256)."""
    found = {} if refusal.reason in NOT_SUBMISSIONS else identify(value, limit)
    return Rejection(
        reason=refusal.reason,
        message=refusal.message,
        raw=value,
        recorded_at=recorded_at,
        line=line,
        org_id=found.get("org_id"),
        event_id=found.get("event_id"),
        type=found.get("type"),
        source=found.get("source"),
        raw_length=None if stand_in is None else stand_in.length,
        raw_sha256=None if stand_in is None else stand_in.sha256,
    )


def peek_org(value: bytes, limit: int) -> str | None:
    """The ``org_id`` of a submission of at most ``limit`` bytes, when it is readable."""
    if len(value) > limit:
        return None
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    org_id = document.get("org_id") if isinstance(document, dict) else None
    return org_id if isinstance(org_id, str) else None


# -- producing intake records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntakeMessage:
    """What a submitter produces for one line."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def intake_message(
    raw: bytes, submission_id: str, line: int | None, refusal: Refusal | None = None
) -> IntakeMessage:
    """The intake record of one submitted line: keyed by its org, or a stand-in if too long;
    with ``refusal``, the record of a submission the submitter refused."""
    claims = () if refusal is None else _refusal_headers(refusal)
    if len(raw) > INTAKE_VALUE_LIMIT:  # a refused one keeps its refusal: recorded under it
        stand_in = stand_in_message(
            raw[:RAW_LIMIT], len(raw), hashlib.sha256(raw).hexdigest(), submission_id, line
        )
        return IntakeMessage(None, stand_in.value, stand_in.headers + claims)
    org_id = peek_org(raw, len(raw))
    key = None if org_id is None else org_id.encode("utf-8")
    return IntakeMessage(key, raw, _headers(submission_id, line) + claims)


def _refusal_headers(refusal: Refusal) -> tuple[tuple[str, bytes], ...]:
    return (
        (REFUSAL_HEADER, refusal.reason.value.encode()),
        (REFUSAL_MESSAGE_HEADER, refusal.message.encode()),
    )


def stand_in_message(
    prefix: bytes, length: int, sha256: str, submission_id: str, line: int | None
) -> IntakeMessage:
    """The stand-in of a line of ``length`` bytes: its first bytes, its length and SHA-256.
    It has no key: its org cannot be read from a prefix."""
    headers = (
        *_headers(submission_id, line),
        (LENGTH_HEADER, str(length).encode()),
        (SHA256_HEADER, sha256.encode()),
    )
    return IntakeMessage(None, prefix[:RAW_LIMIT], headers)


def _headers(submission_id: str, line: int | None) -> tuple[tuple[str, bytes], ...]:
    if line is None:
        return ((SUBMISSION_HEADER, submission_id.encode()),)
    return (SUBMISSION_HEADER, submission_id.encode()), (LINE_HEADER, str(line).encode())


# -- the okr-intake header ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a ledger event or rejection came from: an intake record, and the first offset of
    its batch."""

    partition: int
    offset: int
    batch_start: int

    def header(self) -> tuple[str, bytes]:
        return INTAKE_HEADER, f"{self.partition}/{self.offset}/{self.batch_start}".encode()

    @classmethod
    def from_headers(cls, headers: Headers) -> "Origin | None":
        """The record's origin; ``None`` when it has none, or a malformed or repeated one."""
        found = [value for name, value in headers if name == INTAKE_HEADER]
        if len(found) != 1 or found[0] is None:
            return None
        match = _ORIGIN.fullmatch(found[0])
        if match is None:
            return None
        partition, offset, start = (int(part) for part in match.groups())
        if offset >= _INT64 or start > offset:
            return None
        return cls(partition, offset, start)


# -- outcomes -------------------------------------------------------------------------------


def outcome_key(submission_id: str | None, partition: int, offset: int) -> bytes:
    """An outcome's key: the submission id, or the intake record's position."""
    return (submission_id or f"{partition}/{offset}").encode()


def encode_outcome(
    outcome: Outcome, submission_id: str | None, partition: int, offset: int
) -> bytes:
    """The outcome record's value a waiting submitter matches (by key) and reads."""
    document: dict[str, Any] = {
        "status": outcome.status,
        "org_id": None,
        "event_id": None,
        "submission_id": submission_id,
        "intake_partition": partition,
        "intake_offset": offset,
    }
    if isinstance(outcome, Rejection):
        document |= {
            "org_id": outcome.org_id,
            "event_id": outcome.event_id,
            "reason_code": outcome.reason.value,
            "message": bounded_message(outcome.message),
            "details": bounded_details(outcome.details),
            "recorded_at": outcome.recorded_at,
            "type": outcome.type,
            "source": outcome.source,
            "line": outcome.line,
        }
    else:
        document |= outcome.to_json()
    return orjson.dumps(document)


_Text = Annotated[str, Field(max_length=4096)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    org_id: _Text | None = None
    event_id: _Text | None = None


class AcceptedAnswer(_Answer):
    status: Literal["accepted"]
    org_id: _Text
    event_id: _Text
    sequence: int = Field(ge=1, lt=_INT64)
    hash: _Text


class DuplicateAnswer(_Answer):
    status: Literal["duplicate"]
    org_id: _Text
    event_id: _Text


class _Detail(BaseModel):
    loc: _Text
    msg: _Text


class RejectedAnswer(_Answer):
    status: Literal["rejected"]
    reason_code: ReasonCode
    message: _Text = ""
    details: list[_Detail] = Field(default_factory=list, max_length=1000)
    recorded_at: _Text = ""
    type: _Text | None = None
    source: _Text | None = None
    line: int | None = Field(default=None, ge=0, lt=_INT64)


Answer = AcceptedAnswer | DuplicateAnswer | RejectedAnswer
_ANSWER: TypeAdapter[Answer] = TypeAdapter(Annotated[Answer, Field(discriminator="status")])


def decode_outcome(value: bytes | None) -> Answer | None:
    """An outcome record's value, validated; ``None`` when it is not one the worker wrote."""
    if value is None or len(value) > MAX_OUTCOME_BYTES:
        return None
    try:
        return _ANSWER.validate_json(value)
    except ValidationError:
        return None
