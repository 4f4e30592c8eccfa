"""Arbitrary bodies and headers to POST /v1/submissions and /v1/hooks/jira-check-in (hypothesis),
on one real embedded server.

Bodies: good check-ins, check-ins with fields replaced by any JSON, JSON that is not an
object, random bytes, deep nesting, ``1e400``, invalid UTF-8 and NUL inside strings, a BOM,
repeated keys, lines up to several times the submission limit; as one submission, or NDJSON
batches with blank and CRLF lines; Jira payloads with any JSON in their fields. Headers: the
content types either way, with and without parameters, any ``Idempotency-Key``.

Each answer: never a 5xx; one outcome per non-blank line, each refusal with its own line
number; and the ledger changed by exactly what was answered (an event per acceptance, a
recorded rejection with the same reason code per refusal). Afterwards a good check-in is still
accepted and the chain verifies.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.sqlite_log import SqliteEventLog
from tests.http.conftest import Served
from tests.http.support import JIRA_PAYLOAD, check_in, outcome_lines

NDJSON = "application/x-ndjson"
EXAMPLES = 150
REFUSED = {400: "invalid_json", 403: "forbidden", 413: "too_large"}
"""A single submission's refusal status -> its reason code (422: any other)."""

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
FIELDS = ["type", "org_id", "occurred_at", "actor", "source", "source_event_id", "event_id"]
IDS = st.text("abcdefghij-0123456789", min_size=1, max_size=6).map(lambda s: f"fz-{s}")
DEPTHS = st.integers(1, 5000)
OTHERS = st.sampled_from(["globex", "crm", "Northwind", "jira ", "CheckInCorrected", ""])
"""Another org or source (forbidden for the key), or near misses of the right ones."""
MARK = "MARK"
SPLICES = [b"\xff", b"\xed\xa0\x80", b"\xc3", b"\x00", b"\\ud800", b"\\u0000", b'\\"', b"\n"]
NUMBERS = [b"1e400", b"-1e400", b"1e-400", b"123456789012345678901234567890", b"-0", b"1E2"]


def _check_in(draw: st.DrawFn) -> dict[str, Any]:
    document = check_in(value=draw(st.integers(0, 100)), source_event_id=draw(IDS))
    document["data"]["comment"] = MARK
    return document


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One submission's bytes, of every kind the module docstring names."""
    kind = draw(st.integers(0, 11))
    if kind in (0, 10, 11):  # good (or a duplicate of an earlier example's)
        return orjson.dumps(check_in(value=draw(st.integers(0, 100)), source_event_id=draw(IDS)))
    if kind == 1:  # fields replaced by any JSON, or left out
        document = _check_in(draw)
        for name in draw(st.lists(st.sampled_from([*FIELDS, "data"]), max_size=3)):
            if draw(st.booleans()):
                document[name] = draw(OTHERS | JSON)
            else:
                document.pop(name, None)
        data = document.get("data")
        if isinstance(data, dict) and draw(st.booleans()):
            data[draw(st.sampled_from(["key_result_id", "value", "confidence"]))] = draw(JSON)
        return orjson.dumps(document)
    if kind == 2:
        return orjson.dumps(draw(JSON))
    if kind == 3:
        return draw(st.binary(max_size=80))
    if kind == 4:  # deep nesting, balanced or not
        depth = draw(DEPTHS)
        opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        leaf = b"1" if opening == b"[" else b"[]"
        return opening * depth + leaf + closing * draw(st.sampled_from([depth, depth // 2]))
    if kind == 5:  # a number no double holds, or odd ones
        number = draw(st.sampled_from(NUMBERS))
        return orjson.dumps(_check_in(draw)).replace(f'"{MARK}"'.encode(), number)
    if kind == 6:  # invalid UTF-8, NUL, escapes inside a string
        return orjson.dumps(_check_in(draw)).replace(MARK.encode(), draw(st.sampled_from(SPLICES)))
    if kind == 7:  # long: around and over the submission limit
        size = draw(st.sampled_from([1000, 65_300, 65_600, 70_000, 300_000]))
        return orjson.dumps(_check_in(draw)).replace(MARK.encode(), b"x" * size)
    if kind == 8:  # a BOM, or repeated keys
        good = orjson.dumps(_check_in(draw))
        if draw(st.booleans()):
            return b"\xef\xbb\xbf" + good
        return good[:-1] + b',"org_id":"northwind","source":"jira"}'
    return draw(st.sampled_from([b"", b" ", b"\t", b"\r", b"null", b"{}", b"[]", b'"x"']))


@st.composite
def jira_payloads(draw: st.DrawFn) -> bytes:
    """The Jira fixture with any JSON in some of its fields, up to as deep as a payload may
    nest (or a line of any kind)."""
    if draw(st.booleans()):
        return draw(lines())
    payload = orjson.loads(JIRA_PAYLOAD.read_bytes())
    fields = payload["issue"]["fields"]
    for where in draw(st.lists(st.integers(0, 5), max_size=3)):
        value = draw(JSON | st.integers(-(2**63), 2**64 - 1) | st.just(MARK))
        if where == 0:
            payload["timestamp"] = value
        elif where == 1:
            payload["issue"]["key"] = value
        elif where == 2:
            payload["user"] = value
        else:
            fields[f"customfield_{10042 + where - 3}"] = value
    depth = draw(st.integers(1, 1019))  # within orjson's 1,024 levels at any of those places
    return orjson.dumps(payload).replace(f'"{MARK}"'.encode(), b"[" * depth + b"]" * depth)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def batch(self) -> bool:
        """As the server tells a batch (okr_ledger/http/intake.py)."""
        content_type = self.headers.get("Content-Type", "")
        media_type = content_type.split(";")[0].strip().lower()
        return self.path == "/v1/submissions" and media_type == NDJSON


@st.composite
def requests(draw: st.DrawFn) -> Request:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
                str.strip  # no blanks around a header's value (h11 refuses to send them)
            )
        )
    route = draw(st.sampled_from(["one", "batch", "hook"]))
    if route == "hook":
        return Request("/v1/hooks/jira-check-in", draw(jira_payloads()), headers)
    if route == "batch":
        headers["Content-Type"] = draw(
            st.sampled_from(
                [NDJSON, f"{NDJSON}; charset=utf-8", f"{NDJSON} ;", "Application/X-NDJSON"]
            )
        )
        separator = draw(st.sampled_from([b"\n", b"\r\n"]))
        body = separator.join(draw(st.lists(lines(), min_size=1, max_size=6)))
        return Request("/v1/submissions", body + draw(st.sampled_from([b"", separator])), headers)
    kind = draw(st.sampled_from([None, "application/json", "text/plain", "application/x-ndj"]))
    if kind is not None:
        headers["Content-Type"] = kind
    return Request("/v1/submissions", draw(lines()), headers)


def ledger_state(served: Served) -> tuple[int, list[tuple[str, int | None]]]:
    """(events in the ledger, every recorded rejection's reason code and line)."""
    log = served.ledger()
    try:
        events = sum(head.sequence for head in log.heads().values())
        return events, [(r.reason.value, r.line) for r in log.rejections()]
    finally:
        log.close()


def expected_changes(request: Request, answer: httpx.Response) -> tuple[int, Counter[Any]]:
    """What ``answer`` says was stored: (new events, new rejections by reason code and line);
    with its form checked against the request."""
    assert answer.status_code < 500, answer.text
    if request.batch and answer.status_code != 413:
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(NDJSON)
        outcomes = outcome_lines(answer.content)
        numbers = [n for n, line in enumerate(request.body.split(b"\n"), 1) if line.strip()]
        assert len(outcomes) == len(numbers), (outcomes, numbers)
        rejected = Counter[Any]()
        for number, outcome in zip(numbers, outcomes, strict=True):
            assert outcome["status"] in ("accepted", "duplicate", "rejected"), outcome
            if outcome["status"] == "rejected":
                assert outcome["line"] == number, (outcome, number)
                rejected[(outcome["reason_code"], number)] += 1
        return sum(o["status"] == "accepted" for o in outcomes), rejected
    document = answer.json()
    if answer.status_code in (200, 201):
        assert document["status"] == ("accepted" if answer.status_code == 201 else "duplicate")
        return int(answer.status_code == 201), Counter()
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    reason = document["reason_code"]
    assert answer.status_code == 422 or REFUSED[answer.status_code] == reason, answer.text
    assert document["outcome"]["status"] == "rejected"
    assert document["outcome"]["reason_code"] == reason
    return 0, Counter({(reason, None): 1})


def test_arbitrary_bodies_and_headers_each_get_answers_the_ledger_records(
    served: Served,
) -> None:
    seen = Counter[str]()  # what the examples reached: accepted events, refusals by reason
    with served.server.client(served.writer) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def post(request: Request) -> None:
            events, rejections = ledger_state(served)
            answer = client.post(request.path, content=request.body, headers=request.headers)
            new_events, new_rejections = expected_changes(request, answer)
            after_events, after_rejections = ledger_state(served)
            assert after_events - events == new_events
            assert Counter(after_rejections[len(rejections) :]) == new_rejections
            seen["accepted"] += new_events
            seen.update(reason for reason, _line in new_rejections.elements())

        post()
        # Not only refusals: some examples were stored, and both kinds of bad body reached.
        assert seen["accepted"] > 0, seen
        assert seen["invalid_json"] > 0, seen
        assert seen["schema_violation"] > 0, seen
        good = orjson.dumps(check_in(value=77, source_event_id="after-the-fuzz"))
        answer = client.post("/v1/submissions", content=good)
    assert answer.status_code == 201, answer.text
    log = SqliteEventLog(served.settings.data_dir / "ledger.db", read_only=True)
    try:
        assert all(report.ok for report in log.verify())
    finally:
        log.close()


def test_a_batch_is_told_by_its_media_type_in_any_letters(served: Served) -> None:
    """Media types are case-insensitive (RFC 9110, 8.3.1): ``Application/X-NDJSON`` is a
    batch, answered line by line, not one malformed submission."""
    lines = [b'{"org_id": "globex"}', b"{not json"]
    with served.server.client(served.writer) as client:
        answer = client.post(
            "/v1/submissions",
            content=b"\n".join(lines),
            headers={"Content-Type": "Application/X-NDJSON; charset=UTF-8"},
        )
    assert answer.status_code == 200, answer.text
    outcomes = [orjson.loads(line) for line in answer.content.splitlines()]
    assert [(o["reason_code"], o["line"]) for o in outcomes] == [
        ("forbidden", 1),
        ("invalid_json", 2),
    ]


def test_an_idempotency_key_on_a_document_too_deep_to_write_is_decided(served: Served) -> None:
    """orjson reads 1,024 levels and writes 254: the key cannot be added to such a document,
    which goes as sent, and the rules reject it (no source id, unknown fields): a 422,
    recorded."""
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    body = orjson.dumps(check_in(source_event_id=None))[:-1] + b',"deep":' + deep + b"}"
    before = ledger_state(served)[1]
    with served.server.client(served.writer) as client:
        answer = client.post("/v1/submissions", content=body, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["reason_code"] == "schema_violation"
    assert ledger_state(served)[1][len(before) :] == [("schema_violation", None)]
