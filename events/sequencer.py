"""The sequencer: (ledger state, submission) -> accepted event, duplicate or rejection.

:func:`decide` is pure: given the same state, bytes, clock reading and policy it always gives
the same outcome, and it never changes the state. :func:`decide_batch` decides submissions in
order and folds each accepted event into the state so that the next decision sees it; the
state is a :class:`~events.state.LedgerState` in memory (:class:`Sequencer`, the Kafka worker)
or a view of one kept in SQLite (:mod:`events.state_store`, the embedded ledger).
"""

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from pydantic import ValidationError, create_model

from events.canonical import canonical_bytes
from events.outcomes import Accepted, Duplicate, Outcome, Oversized, Rejection
from events.reasons import ReasonCode
from events.rules import AMENDING, Origin, check
from events.state import LedgerState, OrgState
from events.strict_json import duplicated_key
from schemas.envelope import (
    LedgerEvent,
    Submission,
    derive_event_key,
    event_id_text,
    format_timestamp,
)
from schemas.errors import UnknownEventTypeError
from schemas.payloads import Payload
from schemas.registry import EVENT_TYPES, payload_model, upcast
from schemas.types import CheckedTimestamp

MAX_SUBMISSION_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunable limits of the rules."""

    clock_skew: timedelta = timedelta(minutes=5)
    max_bytes: int = MAX_SUBMISSION_BYTES


DEFAULT_POLICY = Policy()


def _locations(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    return [
        {"loc": ".".join(str(part) for part in (*prefix, *item["loc"])), "msg": item["msg"]}
        for item in error.errors(include_url=False)
    ]


class _RejectedError(Exception):
    def __init__(self, reason: ReasonCode, message: str, details: list[dict[str, str]]) -> None:
        self.reason, self.message, self.details = reason, message, details


def _parse(raw: bytes, policy: Policy, document: Any = None) -> tuple[Submission, int, Payload]:
    """Bytes -> envelope, schema version, payload; raises :class:`_RejectedError`.

    ``document`` is what ``orjson.loads(raw)`` gave, when the caller parsed it already."""
    if len(raw) > policy.max_bytes:
        raise _RejectedError(
            ReasonCode.TOO_LARGE, f"{len(raw)} bytes, over the limit of {policy.max_bytes}", []
        )
    if document is None:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise _RejectedError(ReasonCode.INVALID_JSON, f"not valid JSON: {error}", []) from None
    if not isinstance(document, dict):
        raise _RejectedError(ReasonCode.INVALID_JSON, "a submission is a JSON object", [])
    duplicated = duplicated_key(raw, document)
    if duplicated is not None:
        raise _RejectedError(
            ReasonCode.INVALID_JSON,
            f"the key {duplicated!r} appears twice in one object (readers would disagree on "
            "which value was submitted)",
            [],
        )
    type_name = document.get("type")
    if isinstance(type_name, str):
        if type_name not in EVENT_TYPES:
            raise _RejectedError(ReasonCode.UNKNOWN_TYPE, f"unknown event type {type_name!r}", [])
        if document.get("schema_version") is None:  # the latest version: one validation
            try:
                whole = _validate_whole(type_name, document)
            except ValidationError:
                pass  # the two steps below name the errors, as they always did
            else:
                return whole, EVENT_TYPES[type_name], whole.data
    try:
        # pydantic-core's own call: ``Submission.model_validate`` without its Python wrapper
        submission = _validate_submission(document)
    except ValidationError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION,
            "the envelope does not match the contract",
            _locations(error),
        ) from None
    version = submission.schema_version or EVENT_TYPES[submission.type]
    try:
        model = _LATEST_MODELS.get((submission.type, version)) or payload_model(
            submission.type, version
        )
    except UnknownEventTypeError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION, str(error), [{"loc": "schema_version", "msg": str(error)}]
        ) from None
    try:
        # pydantic-core's own call: ``model.model_validate`` without its Python wrapper
        payload = model.__pydantic_validator__.validate_python(submission.data)
    except ValidationError as error:
        raise _RejectedError(
            ReasonCode.SCHEMA_VIOLATION,
            f"data does not match {submission.type} v{version}",
            _locations(error, ("data",)),
        ) from None
    return submission, version, payload


_dumps = orjson.dumps
_LATEST_MODELS = {(name, version): payload_model(name) for name, version in EVENT_TYPES.items()}
"""Each type's payload model at its latest version (what most submissions name), by
``(type, version)``: one dict lookup instead of :func:`payload_model`'s checks."""
_sha256 = hashlib.sha256
_validate_submission = Submission.__pydantic_validator__.validate_python
_WHOLE: dict[str, Callable[[Any], Any]] = {}
"""Per type, the validation of a whole submission at the type's latest version, made when the
type is first submitted (:func:`_whole`)."""


def _validate_whole(type_name: str, document: dict[str, Any]) -> Any:
    """A submission of ``type_name`` (a known type) that names no ``schema_version``, validated
    in one call (:func:`_whole`)."""
    return (_WHOLE.get(type_name) or _whole(type_name))(document)


def _whole(type_name: str) -> Callable[[Any], Any]:
    """Validate, in one call, a submission of ``type_name`` that names no ``schema_version``:
    the envelope (:class:`Submission`) with its ``data`` as the type's latest payload model,
    which the result's ``data`` then is, and its ``occurred_at`` checked without a call into
    Python (:data:`~schemas.types.CheckedTimestamp`). It succeeds only when the envelope and
    then the payload validate (the same validators, or one that accepts no more), and gives
    the same values; on failure, :func:`_parse` validates in two steps, which name the errors
    of the envelope first, or else those of ``data``, as they always did."""
    model = create_model(
        f"{type_name}Submission",
        __base__=Submission,
        occurred_at=(CheckedTimestamp, ...),
        data=(_LATEST_MODELS[(type_name, EVENT_TYPES[type_name])], ...),
    )
    validate = _WHOLE[type_name] = model.__pydantic_validator__.validate_python
    return validate


class _Content:
    """The normalised envelope without its ``event_id`` (what "the same content" compares), as
    the pieces of its canonical JSON that an event's bytes are made of (ledger-format.md,
    sections 3.1 and 4).

    JCS writes an object as its members sorted by key, so an object whose keys are known is the
    concatenation of its members' encodings: the event's bytes are these pieces with its
    ``event_id``, ``hash``, ``prev_hash``, ``recorded_at`` and ``sequence`` put between them, and
    only ``data`` needs the general serialiser. Made once per submission: hashed for the content
    digest and, if accepted, for the event's hash, and stored.
    """

    __slots__ = ("head", "middle", "tail", "version")

    def __init__(self, submission: Submission, version: int, occurred_at: str, data: Any) -> None:
        # One bytes formatting per piece, not a join of a tuple: a piece is a few members.
        # The fields read from the model's __dict__ (a model's attribute costs twice as much).
        fields = submission.__dict__
        causation_id, correlation_id = fields["causation_id"], fields["correlation_id"]
        source_event_id = fields["source_event_id"]
        self.head = b'{"actor":%b,"causation_id":%b,"correlation_id":%b,"data":%b' % (
            _dumps(fields["actor"]),
            b"null" if causation_id is None else _dumps(causation_id),
            b"null" if correlation_id is None else _dumps(correlation_id),
            canonical_bytes(data),
        )  # then event_id and hash
        self.middle = b',"occurred_at":%b,"org_id":%b' % (  # then prev_hash and recorded_at
            _dumps(occurred_at),
            _dumps(fields["org_id"]),
        )
        self.version = b',"schema_version":%d' % version  # then sequence
        self.tail = b',"source":%b,"source_event_id":%b,"type":%b}' % (
            _dumps(fields["source"]),
            b"null" if source_event_id is None else _dumps(source_event_id),
            _dumps(fields["type"]),
        )

    def digest(self) -> bytes:
        content = b"".join((self.head, self.middle, self.version, self.tail))
        return _sha256(content).digest()[:16]

    def event_bytes(
        self, event_id: str, sequence: int, prev_hash: str, recorded_at: bytes
    ) -> tuple[bytes, str]:
        """The event's canonical JSON and its ``hash`` (ledger-format.md, section 5);
        ``recorded_at`` is its member's encoding (:func:`recorded_at_member`)."""
        before = b'%b,"event_id":%b' % (self.head, _dumps(event_id))  # then hash
        after = b'%b,"prev_hash":%b%b%b,"sequence":%d%b' % (
            self.middle,
            _dumps(prev_hash),
            recorded_at,
            self.version,
            sequence,
            self.tail,
        )
        # The event without its hash member, hashed as one message (one call, not one a piece).
        hash_ = _sha256(b"%b%b%b" % (prev_hash.encode("ascii"), before, after)).hexdigest()
        body = b'%b,"hash":"%b"%b' % (before, hash_.encode(), after)
        return body, hash_


def recorded_at_member(recorded_at: str) -> bytes:
    """The ``recorded_at`` member of an event's bytes (the same for a whole batch)."""
    return b',"recorded_at":' + _dumps(recorded_at)


def _already_recorded(
    state: LedgerState, submission: Submission, event_key: bytes, event_id: str
) -> tuple[str, bytes, str] | None:
    """The recorded event this submission repeats: its id, content digest and how it was found.

    By ``event_id`` first: unique within its org (the Kafka ledger is partitioned by org, and
    no partition can see another's ids, so both backends scope it the same way). Then by the
    source's own id, ``(org_id, source, source_event_id)``, whatever ``event_id`` the
    submission carries: a source that retries under a new ``event_id`` must not count twice.
    """
    digest = state.known.get((submission.org_id, event_key))
    if digest is not None:
        return event_id, digest, f"event_id {event_id}"
    if submission.source_event_id is None:
        return None
    first = state.sources.get((submission.org_id, submission.source, submission.source_event_id))
    if first is None:
        return None
    recorded = event_id_text(first)
    return (
        recorded,
        state.known[(submission.org_id, first)],
        f"source_event_id {submission.source_event_id!r} of source {submission.source!r} "
        f"(event {recorded})",
    )


def decide(
    state: LedgerState,
    raw: bytes | Oversized,
    *,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    line: int | None = None,
) -> Outcome:
    """Decide what becomes of one submission. Does not change ``state``.

    ``raw`` is the submitted bytes, or :class:`Oversized` for a submission the reader did not
    hold whole (always ``too_large``).
    """
    return _decide(state, raw, _Clock(now, policy), policy=policy, line=line)


class Decider:
    """:func:`decide` for the submissions of one batch, at one clock reading (worked out once,
    not per submission), each with its :func:`probe` when the caller made it already (its
    parsed JSON and ids are used, not made again). Decides as :func:`decide` does."""

    __slots__ = ("_clock", "_policy", "now")

    def __init__(self, now: datetime, policy: Policy = DEFAULT_POLICY) -> None:
        self.now = now
        self._clock, self._policy = _Clock(now, policy), policy

    def __call__(
        self,
        state: LedgerState,
        raw: bytes | Oversized,
        probed: "Probe | None" = None,
        line: int | None = None,
    ) -> Outcome:
        return _decide(state, raw, self._clock, policy=self._policy, line=line, probed=probed)


class _Clock:
    """What a batch's decisions read from its one clock reading, worked out once."""

    __slots__ = ("latest", "recorded_at", "recorded_at_member")

    def __init__(self, now: datetime, policy: Policy) -> None:
        self.recorded_at = format_timestamp(now)
        self.recorded_at_member = recorded_at_member(self.recorded_at)
        """``recorded_at``'s member in an event's bytes."""
        self.latest = now + policy.clock_skew
        """The latest ``occurred_at`` accepted."""


_Parsed = tuple[Submission, int, Payload, bytes, str, Any, str, "_Content", bytes]
"""The half of deciding a submission that depends only on its bytes (and the policy), not on
the ledger: its envelope, schema version and payload, event key and id, normalised ``data``,
``occurred_at``, content pieces and content digest. Made by :func:`parse_ahead` before the
write lock (or by :func:`_decide` for a line it was not made for); a tuple, the cheapest
object to make and unpack."""


def _parsed(raw: bytes, policy: Policy, probed: "Probe | None") -> "_Parsed | _RejectedError":
    """The line's :data:`_Parsed`, or the contract's rejection of it."""
    try:
        submission, version, payload = _parse(
            raw, policy, probed.document if probed is not None else None
        )
    except _RejectedError as rejected:
        # Kept on the probe: without the frames (which hold the probe: a reference cycle).
        rejected.__context__ = None
        return rejected.with_traceback(None)
    if (
        probed is not None
        and probed.event_key is not None
        and submission.event_id is None
        and probed.source == (submission.org_id, submission.source, submission.source_event_id)
    ):
        event_key = probed.event_key  # derived from the same ids: no need to derive it again
        event_id = probed.event_id or event_id_text(event_key)
    else:
        event_key = submission.resolved_event_key()
        event_id = event_id_text(event_key)
    data = payload.__pydantic_serializer__.to_python(payload, mode="json", exclude_none=True)
    occurred_at = _timestamp_text(
        probed.document.get("occurred_at") if probed is not None else None,
        submission.occurred_at,
    )
    content = _Content(submission, version, occurred_at, data)
    return (
        submission,
        version,
        payload,
        event_key,
        event_id,
        data,
        occurred_at,
        content,
        content.digest(),
    )


def _timestamp_text(submitted: Any, moment: datetime) -> str:
    """:func:`~schemas.envelope.format_timestamp` of ``moment``, the instant the contract read
    from the text ``submitted``: that text itself when it is the normal form already
    (``2026-11-02T09:00:00Z``), or with ``+00:00`` written ``Z``, without formatting the
    instant again. The contract's pattern (``schemas.types.Timestamp``) leaves no other text
    of 20 characters ending in ``Z``, or of 25 ending in ``+00:00``, with an upper-case ``T``:
    only digits in the date and time, no fraction, and no 24:00 or leap second
    (pydantic refuses both). Anything else is formatted."""
    if type(submitted) is str and submitted[10:11] == "T":
        length = len(submitted)
        if length == 20 and submitted[19] == "Z":
            return submitted
        if length == 25 and submitted.endswith("+00:00"):
            return submitted[:19] + "Z"
    return format_timestamp(moment)


def parse_ahead(
    lines: Sequence[tuple[bytes | Oversized, int | None]],
    probes: Sequence["Probe | None"],
    policy: Policy = DEFAULT_POLICY,
    submitted: Mapping[tuple[str, bytes], bytes] | None = None,
) -> None:
    """The state-independent half of deciding each probed line, kept on its probe
    (``Probe.parsed``) for :func:`decide_batch`: run before the write lock, so that the lock
    is held only for what depends on the ledger (the duplicate and conflict checks, the clock,
    the rules, the chain). A line whose submission digest ``submitted`` holds (read before the
    lock: a byte-identical repeat, most likely) is left to :func:`decide_batch`, which decides
    it without parsing; what it decides is the same either way."""
    repeated = submitted.get if submitted else None
    for (raw, _), probed in zip(lines, probes, strict=True):
        if probed is None or probed.parsed is not None or type(raw) is not bytes:
            continue
        if (
            repeated is not None
            and probed.submitted is not None
            and probed.event_key is not None
            and probed.org_id is not None
            and repeated((probed.org_id, probed.event_key)) == probed.submitted
        ):
            continue
        probed.parsed = _parsed(raw, policy, probed)


def _decide(
    state: LedgerState,
    raw: bytes | Oversized,
    clock: _Clock,
    *,
    policy: Policy,
    line: int | None,
    probed: "Probe | None" = None,
) -> Outcome:
    if isinstance(raw, Oversized):
        too_large = _RejectedError(
            ReasonCode.TOO_LARGE, f"{raw.length} bytes, over the limit of {policy.max_bytes}", []
        )
        return _rejection(too_large, raw, clock.recorded_at, line, {})
    parsed = probed.parsed if probed is not None else None
    if parsed is None:
        parsed = _parsed(raw, policy, probed)
    if type(parsed) is _RejectedError:
        return _rejection(parsed, raw, clock.recorded_at, line, _peek(raw))
    assert type(parsed) is tuple
    submission, version, payload, event_key, event_id, data, occurred_at, content, digest = parsed
    recorded_at = clock.recorded_at
    fields = submission.__dict__  # a model's attribute costs twice as much as this dict's item
    org_id, source, source_event_id = fields["org_id"], fields["source"], fields["source_event_id"]
    type_name = fields["type"]
    recorded = (
        # Nothing recorded under its id, nor under its source's (most submissions): no call.
        None
        if state.known.get((org_id, event_key)) is None
        and (
            source_event_id is None or state.sources.get((org_id, source, source_event_id)) is None
        )
        else _already_recorded(state, submission, event_key, event_id)
    )
    if recorded is not None:
        recorded_id, recorded_digest, found_by = recorded
        if recorded_digest == digest:
            return Duplicate(recorded_id, org_id)
        return _rejection(
            _RejectedError(
                ReasonCode.CONFLICT, f"{found_by} is already in the ledger with other content", []
            ),
            raw,
            recorded_at,
            line,
            _context(submission, event_id),
        )
    if fields["occurred_at"] > clock.latest:
        return _rejection(
            _RejectedError(
                ReasonCode.CLOCK_SKEW,
                f"occurred_at {occurred_at} is more than "
                f"{int(policy.clock_skew.total_seconds())}s ahead of the ledger clock",
                [{"loc": "occurred_at", "msg": "in the future"}],
            ),
            raw,
            recorded_at,
            line,
            _context(submission, event_id),
        )
    org = state.orgs.get(org_id) or OrgState()
    if version != EVENT_TYPES[type_name]:
        payload = payload_model(type_name).model_validate(upcast(type_name, version, data))
    # Only a correction or retraction looks at who submits it: no Origin made for the others.
    origin = Origin(org_id, source) if isinstance(payload, AMENDING) else None
    violation = check(org, payload, origin)
    if violation is not None:
        return _rejection(
            _RejectedError(violation.reason, violation.message, []),
            raw,
            recorded_at,
            line,
            _context(submission, event_id),
        )

    sequence = org.last_sequence + 1
    body, hash_ = content.event_bytes(event_id, sequence, org.last_hash, clock.recorded_at_member)
    record = {  # LedgerEvent's field order
        "sequence": sequence,
        "event_id": event_id,
        "org_id": org_id,
        "type": type_name,
        "schema_version": version,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
        "actor": fields["actor"],
        "source": source,
        "source_event_id": source_event_id,
        "correlation_id": fields["correlation_id"],
        "causation_id": fields["causation_id"],
        "data": data,
        "prev_hash": org.last_hash,
        "hash": hash_,
    }
    return Accepted(
        record, digest, body, probed.submitted if probed is not None else None, event_key
    )


def _context(submission: Submission, event_id: str) -> dict[str, Any]:
    """What a rejection of a valid submission records about it."""
    return {
        "org_id": submission.org_id,
        "event_id": event_id,
        "type": submission.type,
        "source": submission.source,
    }


def _peek(raw: bytes) -> dict[str, Any]:
    """Best-effort identification of a rejected submission, for the rejection record."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        key: value[:200]
        for key in ("org_id", "event_id", "type", "source")
        if isinstance(value := document.get(key), str)
    }


def _rejection(
    rejected: _RejectedError,
    raw: bytes | Oversized,
    recorded_at: str,
    line: int | None,
    context: dict[str, Any],
) -> Rejection:
    oversized = raw if isinstance(raw, Oversized) else None
    return Rejection(
        reason=rejected.reason,
        message=rejected.message,
        raw=raw if isinstance(raw, bytes) else raw.prefix,
        recorded_at=recorded_at,
        details=rejected.details,
        line=line,
        raw_length=oversized.length if oversized else None,
        raw_sha256=oversized.sha256 if oversized else None,
        **context,
    )


SUBMISSION_DIGEST_DOMAIN = hashlib.sha256(
    b"okr-ledger submission\x00" + orjson.dumps(sorted(EVENT_TYPES.items()))
).digest()
"""What a submission digest is taken under. The same bytes mean the same content as long as
the contract does: a type's versions are never changed once published (a change is a new
version), so only the latest version of each type, which a submission that omits
``schema_version`` gets, can change what the same bytes mean. It is part of this prefix."""


def submission_digest(raw: bytes) -> bytes:
    """The digest of submitted bytes that a state may keep for the event they became."""
    return hashlib.sha256(SUBMISSION_DIGEST_DOMAIN + raw).digest()[:16]


@dataclass(slots=True)
class Probe:
    """A submission's JSON and what it names, read before it is validated: the ids a batch
    needs from a stored state (loaded in bulk), and its submission digest. Nothing is
    decided from a probe except a byte-identical repeat of an accepted submission."""

    document: dict[str, Any]
    org_id: str | None = None
    event_key: bytes | None = None
    """Its ``event_id`` as given, else the one its ``source_event_id`` derives."""
    derived_key: bytes | None = None
    """The id its ``source_event_id`` derives, when it gives an ``event_id`` too."""
    source: tuple[str, str, str] | None = None
    """``(org_id, source, source_event_id)``."""
    submitted: bytes | None = None
    event_id: str | None = None
    """``event_key`` as text (:func:`~schemas.envelope.event_id_text`): what the ledger's rows
    and a duplicate's outcome give, made once."""
    parsed: "_Parsed | _RejectedError | None" = None
    """What :func:`parse_ahead` made of it (None: not made; :func:`decide_batch` makes it)."""


def probe(raw: bytes | Oversized, policy: Policy = DEFAULT_POLICY) -> Probe | None:
    """Read ``raw``'s JSON and the ids it names (None: not a JSON object within the limit).

    The ids are read as the contract would normalise them (``source`` is trimmed), but they
    are only hints: a wrong one costs a lookup, never a wrong decision."""
    if not isinstance(raw, bytes) or len(raw) > policy.max_bytes:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    org_id = document.get("org_id")
    if type(org_id) is not str:
        return Probe(document)
    source, source_event_id = document.get("source"), document.get("source_event_id")
    source_key = derived = None
    if type(source) is str and type(source_event_id) is str:
        source = source.strip()
        source_key = (org_id, source, source_event_id)
        derived = derive_event_key(org_id, source, source_event_id)
    given = document.get("event_id")
    event_key = derived
    if given is not None:
        try:
            event_key = UUID(given).bytes
        except (TypeError, ValueError, AttributeError):
            event_key = None
    event_id = None
    if event_key is not None:  # event_id_text, inline (one call less per line)
        h = event_key.hex()
        event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return Probe(
        document,
        org_id,
        event_key,
        derived if given is not None else None,
        source_key,
        _sha256(SUBMISSION_DIGEST_DOMAIN + raw).digest()[:16],  # submission_digest, inline
        event_id,
    )


def decide_batch(
    state: LedgerState,
    lines: Sequence[tuple[bytes | Oversized, int | None]],
    *,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    probes: Sequence[Probe | None] | None = None,
) -> list[Outcome]:
    """Decide submissions in order on ``state`` at one clock reading, folding each accepted
    event into ``state`` so that the next submission sees it. ``probes`` are the lines'
    :func:`probe` when the caller made them already (to load ``state`` for them).

    A submission whose bytes are exactly those an event of ``state`` was accepted from (by
    its :func:`submission_digest`) is a duplicate of that event, without being parsed and
    validated again: :func:`decide` would find the same event with the same content.
    """
    clock = _Clock(now, policy)
    if probes is None:
        probes = [probe(raw, policy) for raw, _ in lines]
    outcomes: list[Outcome] = []
    append = outcomes.append
    repeated = state.submitted_digests.get  # LedgerState.submitted, without a call per line
    for (raw, line), probed in zip(lines, probes, strict=True):
        if (
            probed is not None
            and (submitted := probed.submitted) is not None
            and (key := probed.event_key) is not None
            and (org_id := probed.org_id) is not None
            and repeated((org_id, key)) == submitted
        ):
            append(Duplicate(probed.event_id or event_id_text(key), org_id))
            continue
        outcome = _decide(state, raw, clock, policy=policy, line=line, probed=probed)
        if type(outcome) is Accepted:
            assert outcome.key is not None  # the sequencer's own outcomes carry it
            state.apply_record(outcome.record, outcome.key, outcome.digest, outcome.submitted)
        append(outcome)
    return outcomes


def repeats_only(state: LedgerState, probes: Sequence[Probe | None]) -> list[Outcome] | None:
    """The outcomes of a batch whose every submission is a byte-identical repeat of an event of
    ``state`` (by its :func:`submission_digest`), decided as :func:`decide_batch` decides each
    of them first: a :class:`Duplicate` naming that event. None if any is not (or no probes).

    Such a batch stores nothing, and its outcomes rest only on events that are stored: an
    event is never changed or removed, so they hold whatever is appended meanwhile."""
    if not probes:
        return None
    repeated = state.submitted_digests.get
    outcomes: list[Outcome] = []
    append = outcomes.append
    for probed in probes:
        if (
            probed is None
            or (submitted := probed.submitted) is None
            or (key := probed.event_key) is None
            or (org_id := probed.org_id) is None
            or repeated((org_id, key)) != submitted
        ):
            return None
        append(Duplicate(probed.event_id or event_id_text(key), org_id))
    return outcomes


class Sequencer:
    """Holds a :class:`LedgerState` in memory and advances it with every accepted event."""

    def __init__(self, state: LedgerState | None = None, policy: Policy = DEFAULT_POLICY) -> None:
        self.state = state or LedgerState()
        self.policy = policy

    @classmethod
    def from_ledger(
        cls, events: Iterable[LedgerEvent], policy: Policy = DEFAULT_POLICY
    ) -> "Sequencer":
        """Rebuild the state by folding the ledger (every org, in sequence order)."""
        sequencer = cls(policy=policy)
        for event in events:
            sequencer.fold(event)
        return sequencer

    def fold(self, event: LedgerEvent) -> None:
        """Fold an event that is in the ledger already (read on start, or another writer's)."""
        self.state.apply(event, content_digest(event))

    def submit(self, raw: bytes | Oversized, *, now: datetime, line: int | None = None) -> Outcome:
        return decide_batch(self.state, [(raw, line)], now=now, policy=self.policy)[0]


_NOT_CONTENT = frozenset({"event_id", "sequence", "recorded_at", "prev_hash", "hash"})


def content_digest(event: LedgerEvent) -> bytes:
    """The digest :func:`decide` computed for the submission that became ``event``."""
    return record_digest(vars(event))


def record_digest(record: Mapping[str, Any]) -> bytes:
    """:func:`content_digest` of an event's fields (as stored)."""
    content = {k: v for k, v in record.items() if k not in _NOT_CONTENT}
    return hashlib.sha256(canonical_bytes(content)).digest()[:16]
