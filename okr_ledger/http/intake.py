"""``POST /v1/submissions`` (one JSON submission, or an NDJSON batch) and
``POST /v1/hooks/{name}`` (a tool's payload through its mapping).

Order of checks: the key (401), its rate limit (429), the body's size and a batch's number of
submissions (413, recorded as ``too_large``), a hook's name (404, the payload recorded as
``unknown_hook``), then per submission the key's scope: another org, source or event type is
refused (403) and recorded as a ``forbidden`` rejection. Everything else is decided by the
ledger's rules, as from the CLI: malformed JSON is ``invalid_json`` (400), any other
rejection 422. An unauthenticated (401) or rate-limited (429) request is not recorded: the
server never read it, so anyone could otherwise fill the rejection log.
"""

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from events.intake_wire import Refusal
from events.ledger import ReadLine
from events.outcomes import Oversized
from events.reasons import ReasonCode
from events.strict_json import duplicated_key
from okr_ledger.http.bodies import read_body
from okr_ledger.http.keys import KeyRecord, write_refusal
from okr_ledger.http.problems import problem
from okr_ledger.http.services import Services, services
from okr_ledger.runtime import Refused
from okr_ledger.submit_outcome import SubmitOutcome
from schemas.errors import UnknownNameError

router = APIRouter(tags=["intake"])
NDJSON = "application/x-ndjson"
STATUS_OF_REASON = {
    ReasonCode.FORBIDDEN: 403,
    ReasonCode.INVALID_JSON: 400,
    ReasonCode.TOO_LARGE: 413,
    ReasonCode.UNKNOWN_HOOK: 404,
}
"""HTTP status of a rejected single submission; any other reason code is 422."""

_OUTCOMES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Duplicate: the event is in the ledger already (a retry)."},
    201: {"description": "Accepted: the outcome with the event's sequence and hash."},
    400: {"description": "Malformed JSON (recorded: invalid_json)."},
    401: {"description": "No valid key."},
    403: {"description": "The key may not send this org, source or type (recorded: forbidden)."},
    413: {"description": "Body over the limit (recorded: too_large)."},
    422: {"description": "Rejected by the rules (recorded, with its reason code)."},
    429: {"description": "Over the key's rate limit; see Retry-After."},
}
_HOOK_OUTCOMES: dict[int | str, dict[str, Any]] = {
    **_OUTCOMES,
    404: {"description": "No hook of that name (the payload recorded: unknown_hook)."},
}


def _document(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def with_idempotency_key(raw: bytes, document: dict[str, Any], key: str | None) -> bytes:
    """The submission with ``key`` as its ``source_event_id`` when it has none. A document
    that repeats a key, or is nested deeper than orjson writes, is left as it is (re-encoding
    would hide the repeat, or fail; the rules reject it)."""
    if key is None or "source_event_id" in document or duplicated_key(raw, document):
        return raw
    try:
        return orjson.dumps({**document, "source_event_id": key})
    except orjson.JSONEncodeError:  # orjson reads 1,024 levels but writes 254
        return raw


def _refusal(record: KeyRecord, document: Any) -> Refusal | None:
    if not isinstance(document, dict):
        return None  # not an object: the rules reject it (invalid_json)
    why = write_refusal(
        record, document.get("org_id"), document.get("source"), document.get("type")
    )
    return Refusal(ReasonCode.FORBIDDEN, why) if why else None


def answer(s: Services, outcome: SubmitOutcome) -> Response:
    """One submission's answer: its outcome (201, 200), or a problem holding it."""
    s.metrics.count([outcome])
    if outcome.ok:
        status = 201 if outcome.status == "accepted" else 200
        return Response(orjson.dumps(outcome.to_json()), status, media_type="application/json")
    reason = ReasonCode(outcome.reason_code or ReasonCode.INVALID_RECORD)
    return problem(
        STATUS_OF_REASON.get(reason, 422),
        reason.value,
        outcome.message or reason.value,
        outcome=outcome.to_json(),
    )


async def _too_large(s: Services, body: Oversized) -> Response:
    (outcome,) = await s.committer.submit([(body, None)])
    return answer(s, outcome)


async def _unknown_hook(s: Services, name: str, body: bytes) -> Response:
    """A payload posted to a hook that does not exist (a source's URL with a typo): recorded
    as sent, answered 404 with the closest names."""
    error = UnknownNameError("hook", name, s.hooks)
    refusal = Refusal(ReasonCode.UNKNOWN_HOOK, str(error))  # its message bounded
    (outcome,) = await s.committer.refuse([(body, refusal, None)])
    s.metrics.count([outcome])
    return problem(
        404,
        ReasonCode.UNKNOWN_HOOK.value,
        refusal.message,
        suggestions=error.suggestions,
        outcome=outcome.to_json(),
    )


async def submit_one(s: Services, record: KeyRecord, raw: bytes, key: str | None) -> Response:
    document = _document(raw)
    refusal = _refusal(record, document)
    if refusal is not None:
        (outcome,) = await s.committer.refuse([(raw, refusal, None)])
        return answer(s, outcome)
    if isinstance(document, dict):
        raw = with_idempotency_key(raw, document, key)
    (outcome,) = await s.committer.submit([(raw, None)])
    return answer(s, outcome)


def submissions_over(body: bytes, limit: int) -> bool:
    """Whether ``body`` holds more than ``limit`` non-blank lines (counted only when it has
    more lines than that at all)."""
    if body.count(b"\n") < limit:
        return False
    return sum(1 for line in body.split(b"\n") if line.strip()) > limit


async def _submit_batch(s: Services, record: KeyRecord, body: bytes, key: str | None) -> Response:
    """Each line parsed once (for the key's checks), the refused ones recorded, the rest
    decided by the group-commit writer; the outcomes encoded in one pass, in line order. A
    batch of more submissions than ``OKR_HTTP_MAX_BATCH_LINES`` is refused whole, recorded
    once: each line is a recorded outcome and an answered one, so a body of tiny lines would
    otherwise cost far more than its size."""
    limit = s.settings.http_max_batch_lines
    if submissions_over(body, limit):
        too_many = Refusal(ReasonCode.TOO_LARGE, f"a batch of more than {limit} submissions")
        (outcome,) = await s.committer.refuse([(body, too_many, None)])
        return answer(s, outcome)
    lines: list[ReadLine] = []
    refused: list[Refused] = []
    was_refused: list[bool] = []  # per answered line, in order: filled once one is refused
    for number, line in enumerate(body.split(b"\n"), start=1):
        raw = line.strip()
        if not raw:
            continue
        document = _document(raw)
        refusal = _refusal(record, document)
        if refusal is not None:
            if not refused:
                was_refused = [False] * len(lines)
            refused.append((raw, refusal, number))
            was_refused.append(True)
            continue
        if key and isinstance(document, dict):
            raw = with_idempotency_key(raw, document, f"{key}-{number}")
        lines.append((raw, number))
        if refused:
            was_refused.append(False)
    if not refused:
        outcomes = await s.committer.submit(lines)
    else:
        decided, rejected = await asyncio.gather(
            s.committer.submit(lines), s.committer.refuse(refused)
        )
        placed = iter(decided), iter(rejected)
        outcomes = [next(placed[r]) for r in was_refused]
    s.metrics.count(outcomes)
    return Response(encode_outcomes(outcomes), 200, media_type=NDJSON)


def encode_outcomes(outcomes: list[SubmitOutcome]) -> bytes:
    """NDJSON: one outcome per line, each encoded by orjson once (its newline appended by
    orjson, no copy per line)."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return b"".join([dumps(o.to_json(), option=option) for o in outcomes])


@router.post("/v1/submissions", responses=_OUTCOMES, summary="Submit one event or a batch")
async def submissions(request: Request) -> Response:
    """One JSON submission (answered by its outcome), or with `Content-Type:
    application/x-ndjson` a batch, one submission per line (answered 200 with one outcome per
    line, in order, as `okr-ledger submit --outcomes` writes them). An `Idempotency-Key`
    header becomes the `source_event_id` of a submission that has none (of line N of a batch:
    `<key>-N`), so a retry is a duplicate."""
    s = services(request)
    record = s.key(request)
    key = request.headers.get("idempotency-key")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    batch = media_type == NDJSON  # media types are case-insensitive (RFC 9110, 8.3.1)
    limit = s.settings.http_max_batch_bytes if batch else s.settings.max_submission_bytes
    body = await read_body(request, limit)
    if isinstance(body, Oversized):
        return await _too_large(s, body)
    if batch:
        return await _submit_batch(s, record, body, key)
    return await submit_one(s, record, body.strip(), key)


@router.post(
    "/v1/hooks/{name}", responses=_HOOK_OUTCOMES, summary="Submit a tool's webhook payload"
)
async def hook(name: str, request: Request) -> Response:
    """The payload becomes one submission through the hook's mapping (OKR_HTTP_HOOKS_FILE),
    then goes as `POST /v1/submissions` does, with the same key checks."""
    s = services(request)
    record = s.key(request)
    body = await read_body(request, s.settings.http_max_hook_bytes)
    if isinstance(body, Oversized):
        return await _too_large(s, body)
    mapping = s.hooks.get(name)
    if mapping is None:
        return await _unknown_hook(s, name, body)
    payload = _document(body)
    if payload is None:  # recorded as the rules see it: invalid_json
        (outcome,) = await s.committer.submit([(body, None)])
        return answer(s, outcome)
    raw = orjson.dumps(mapping.submission(payload, record.source))
    return await submit_one(s, record, raw, request.headers.get("idempotency-key"))
