"""POST /v1/submissions and /v1/hooks on the embedded runtime: a real server, a real client.

Every refusal that carries a submission is checked in the ledger's own rejection log.
"""

import hashlib
from typing import Any

import orjson
import pytest

from events.reasons import ReasonCode
from events.sqlite_log import SqliteEventLog
from okr_ledger.http.keys import Scope
from tests.http.conftest import Served
from tests.http.support import JIRA_PAYLOAD, check_in, cli, ndjson, outcome_lines

NDJSON = "application/x-ndjson"


def event_count(served: Served) -> int:
    log = SqliteEventLog(served.settings.data_dir / "ledger.db", read_only=True)
    try:
        return sum(head.sequence for head in log.heads().values())
    finally:
        log.close()


def post(served: Served, key: str | None, body: bytes, **headers: str) -> Any:
    with served.server.client(key) as client:
        return client.post("/v1/submissions", content=body, headers=headers)


def test_a_check_in_is_accepted_then_a_retry_is_a_duplicate(served: Served) -> None:
    body = orjson.dumps(check_in(source_event_id="retry-1"))
    first = post(served, served.writer, body)
    assert first.status_code == 201, first.text
    accepted = first.json()
    assert accepted["status"] == "accepted"
    assert accepted["sequence"] >= 1
    assert len(accepted["hash"]) == 64
    again = post(served, served.writer, body)
    assert again.status_code == 200
    assert again.json() == {
        "status": "duplicate",
        "event_id": accepted["event_id"],
        "org_id": "northwind",
    }


def test_the_idempotency_key_header_is_the_source_event_id(served: Served) -> None:
    body = orjson.dumps(check_in(value=44, source_event_id=None))
    first = post(served, served.writer, body, **{"Idempotency-Key": "sheet-row-17"})
    assert first.status_code == 201, first.text
    retry = post(served, served.writer, body, **{"Idempotency-Key": "sheet-row-17"})
    assert retry.status_code == 200
    assert retry.json()["status"] == "duplicate"
    assert retry.json()["event_id"] == first.json()["event_id"]
    without = post(served, served.writer, body)  # no id at all: the rules reject it
    assert without.status_code == 422
    assert without.json()["reason_code"] == "schema_violation"


def test_an_ndjson_batch_answers_one_outcome_per_line(served: Served) -> None:
    lines = [orjson.dumps(check_in(value=30 + n, source_event_id=f"batch-{n}")) for n in range(5)]
    lines.insert(2, b"{not json")
    lines.append(orjson.dumps(check_in(key_result_id="no-such-kr", source_event_id="b-x")))
    lines.append(orjson.dumps(check_in(org_id="globex", source_event_id="b-y")))
    before = len(served.rejections())
    with served.server.client(served.writer) as client:
        answer = client.post(
            "/v1/submissions",
            content=ndjson(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
        retried = client.post(
            "/v1/submissions",
            content=ndjson(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    outcomes = outcome_lines(answer.content)
    assert [o["status"] for o in outcomes] == [
        "accepted", "accepted", "rejected", "accepted", "accepted", "accepted", "rejected",
        "rejected",
    ]  # fmt: skip
    assert [o.get("reason_code") for o in outcomes if o["status"] == "rejected"] == [
        "invalid_json",
        "unknown_reference",
        "forbidden",
    ]
    assert [o["line"] for o in outcomes if o["status"] == "rejected"] == [3, 7, 8]
    sequences = [o["sequence"] for o in outcomes if o["status"] == "accepted"]
    assert sequences == sorted(sequences)
    again = outcome_lines(retried.content)
    assert [o["status"] for o in again if o["status"] != "rejected"] == ["duplicate"] * 5
    recorded = served.rejections()[before:]
    assert [r.reason for r in recorded] == [
        ReasonCode.INVALID_JSON, ReasonCode.UNKNOWN_REFERENCE, ReasonCode.FORBIDDEN,
    ] * 2  # fmt: skip
    assert recorded[2].raw == lines[-1]
    assert recorded[2].line == 8


def test_malformed_json_is_400_and_recorded(served: Served) -> None:
    before = len(served.rejections())
    answer = post(served, served.writer, b'{"type": "CheckInRecorded", ')
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["reason_code"] == "invalid_json"
    assert problem["status"] == 400
    assert problem["outcome"]["status"] == "rejected"
    (recorded,) = served.rejections()[before:]
    assert recorded.reason is ReasonCode.INVALID_JSON
    assert recorded.raw == b'{"type": "CheckInRecorded",'


def test_a_body_over_the_limit_is_413_and_recorded_with_its_length_and_hash(
    served: Served,
) -> None:
    body = orjson.dumps(check_in(source_event_id="big")) + b" " * 200_000
    before = len(served.rejections())
    answer = post(served, served.writer, body)
    assert answer.status_code == 413
    assert answer.json()["reason_code"] == "too_large"
    (recorded,) = served.rejections()[before:]
    assert recorded.reason is ReasonCode.TOO_LARGE
    assert recorded.raw_length == len(body)
    assert recorded.raw_sha256 == hashlib.sha256(body).hexdigest()
    assert len(recorded.raw) == 64 * 1024


def test_a_batch_of_more_lines_than_its_limit_is_413_and_recorded_once(served: Served) -> None:
    """Three bytes a line (``{}``) were a rejection recorded and answered each (about 540
    bytes of answer a line): 8 MiB of them, 2.8 million rejections and 1.5 GB held for one
    request. Over ``OKR_HTTP_MAX_BATCH_LINES`` (10,000) the batch is refused whole."""
    limit = served.settings.http_max_batch_lines
    assert limit == 10_000
    body = b"{}\n" * (limit + 1)
    before = len(served.rejections())
    answer = post(served, served.writer, body, **{"Content-Type": NDJSON})
    assert answer.status_code == 413, answer.text[:300]
    problem = answer.json()
    assert problem["reason_code"] == "too_large"
    assert f"more than {limit} submissions" in problem["detail"]
    (recorded,) = served.rejections()[before:]
    assert recorded.reason is ReasonCode.TOO_LARGE
    assert recorded.raw == body  # under 64 KiB: kept whole
    blank_lines = b"\n \n" * limit  # blank lines are no submissions
    at_the_limit = b"{}\n" * limit + blank_lines
    answer = post(served, served.writer, at_the_limit, **{"Content-Type": NDJSON})
    assert answer.status_code == 200
    assert len(outcome_lines(answer.content)) == limit


def test_a_rejection_by_the_rules_is_422_with_its_reason_code(served: Served) -> None:
    answer = post(served, served.writer, orjson.dumps(check_in("kr-missing", source_event_id="u")))
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["reason_code"] == "unknown_reference"
    assert "kr-missing" in problem["detail"]
    assert problem["outcome"]["reason_code"] == "unknown_reference"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer okr_000000000000_" + "A" * 43, "Basic dXNlcjpwYXNz", "nonsense"],
)
def test_no_valid_key_is_401_and_nothing_is_recorded(
    served: Served, authorization: str | None
) -> None:
    before = (len(served.rejections()), event_count(served))
    headers = {"Authorization": authorization} if authorization else {}
    with served.server.client() as client:
        answer = client.post(
            "/v1/submissions", content=orjson.dumps(check_in(source_event_id="n")), headers=headers
        )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["reason_code"] == "unauthorized"
    assert (len(served.rejections()), event_count(served)) == before


def test_a_wrong_secret_for_a_real_key_id_is_401(served: Served) -> None:
    forged = served.writer[:17] + ("B" if served.writer[17] != "B" else "C") + served.writer[18:]
    answer = post(served, forged, orjson.dumps(check_in(source_event_id="f")))
    assert answer.status_code == 401


def test_a_revoked_key_is_refused_at_once(served: Served) -> None:
    key = served.key()
    key_id = key.split("_")[1]
    assert post(served, key, orjson.dumps(check_in(source_event_id="rv1"))).status_code == 201
    done = cli(served.env, "keys", "revoke", key_id)
    assert done.returncode == 0, done.stderr
    assert f"revoked key {key_id}" in done.stdout
    assert post(served, key, orjson.dumps(check_in(source_event_id="rv2"))).status_code == 401
    listed = cli(served.env, "keys", "list", "--json")
    found = [orjson.loads(line) for line in listed.stdout.splitlines()]
    mine = next(k for k in found if k["key_id"] == key_id)
    assert mine["revoked_at"] is not None
    assert all("sha256" not in k and "key" not in k for k in found)


def _spoofs(served: Served) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(what, key, body, headers): each one a submission the key may not send."""
    typed = served.key(types=("CheckInRecorded",))
    reader = served.reader
    globex_crm = served.key(orgs=("globex",), source="crm")
    both = served.key(orgs=("northwind", "globex"), source="jira", types=("CheckInRecorded",))
    key_result = {
        "key_result_id": "kr-x", "objective_id": "delight-customers", "title": "x",
        "kind": "increase", "start": 0, "target": 1, "unit": "x",
    }  # fmt: skip

    def body(**changes: Any) -> bytes:
        document = check_in(source_event_id="spoof")
        document.update(changes)
        return orjson.dumps(document)

    ndjson_type = {"Content-Type": "application/x-ndjson"}
    return [
        ("another org", served.writer, body(org_id="globex"), {}),
        ("the org in capitals", served.writer, body(org_id="Northwind"), {}),
        ("the org with a trailing space", served.writer, body(org_id="northwind "), {}),
        ("the org with a zero-width space", served.writer, body(org_id="north\u200bwind"), {}),
        (
            "another org in a unicode escape",
            served.writer,
            b'{"org_id": "glob\\u0065x", "type": "CheckInRecorded", "source": "jira"}',
            {},
        ),
        ("another source", served.writer, body(source="crm"), {}),
        ("the source in capitals", served.writer, body(source="Jira"), {}),
        ("the source with a trailing space", served.writer, body(source="jira "), {}),
        (
            "the org given twice, another last",
            served.writer,
            b'{"org_id": "northwind", "source": "jira", "type": "CheckInRecorded", '
            b'"org_id": "globex"}',
            {},
        ),
        (
            "the source given twice, another last",
            served.writer,
            b'{"org_id": "northwind", "source": "jira", "source": "crm"}',
            {},
        ),
        ("a type the key may not send", typed, body(type="KeyResultDefined", data=key_result), {}),
        ("another type the key may not send", typed, body(type="ObjectiveStatusChanged"), {}),
        ("a type in other letters", typed, body(type="checkinrecorded"), {}),
        ("a correction by a check-in-only key", typed, body(type="CheckInCorrected"), {}),
        ("a read key submitting", reader, body(), {}),
        ("another source's key for this org", globex_crm, body(source="crm"), {}),
        ("another source's key as its own source", globex_crm, body(), {}),
        ("a two-org key as another source", both, body(org_id="globex", source="crm"), {}),
        (
            "an Idempotency-Key for another org",
            served.writer,
            orjson.dumps({**check_in(source_event_id=None), "org_id": "globex"}),
            {"Idempotency-Key": "spoof-key"},
        ),
        ("a batch line for another org", served.writer, body(org_id="globex"), ndjson_type),
        ("a batch line as another source", served.writer, body(source="crm"), ndjson_type),
        ("a batch line of a forbidden type", typed, body(type="PeriodClosed"), ndjson_type),
    ]


def test_spoofing_another_org_source_or_type_is_403_and_recorded_as_forbidden(
    served: Served,
) -> None:
    spoofs = _spoofs(served)
    assert len(spoofs) >= 20
    before_events = event_count(served)
    before = len(served.rejections())
    for what, key, body, headers in spoofs:
        answer = post(served, key, body, **headers)
        if headers.get("Content-Type") == "application/x-ndjson":
            assert answer.status_code == 200, what
            (outcome,) = outcome_lines(answer.content)
        else:
            assert answer.status_code == 403, (what, answer.text)
            assert answer.json()["reason_code"] == "forbidden", what
            outcome = answer.json()["outcome"]
        assert outcome["status"] == "rejected", what
        assert outcome["reason_code"] == "forbidden", what
    recorded = served.rejections()[before:]
    assert [r.reason for r in recorded] == [ReasonCode.FORBIDDEN] * len(spoofs)
    for (what, _key, body, headers), rejection in zip(spoofs, recorded, strict=True):
        if "Idempotency-Key" in headers:
            assert orjson.loads(rejection.raw) == orjson.loads(body), what
        else:
            assert rejection.raw == body, what
        assert rejection.message.startswith("key "), what
    assert event_count(served) == before_events


def test_hooks_map_a_jira_webhook_to_a_check_in(served: Served) -> None:
    payload = JIRA_PAYLOAD.read_bytes()
    with served.server.client(served.writer) as client:
        first = client.post("/v1/hooks/jira-check-in", content=payload)
        redelivered = client.post("/v1/hooks/jira-check-in", content=payload)
        unknown = client.post("/v1/hooks/jira-checkin", content=payload)
        other_org = client.post("/v1/hooks/other-org", content=payload)
        payload_source = client.post("/v1/hooks/payload-source", content=payload)
        not_json = client.post("/v1/hooks/jira-check-in", content=b"<xml/>")
    assert first.status_code == 201, first.text
    assert redelivered.status_code == 200
    assert redelivered.json()["status"] == "duplicate"
    assert unknown.status_code == 404
    assert unknown.json()["suggestions"] == ["jira-check-in"]
    assert other_org.status_code == 403
    assert payload_source.status_code == 403
    assert "'OKR'" in payload_source.json()["detail"]
    assert not_json.status_code == 400
    history = cli(served.env, "history", "nps", "--json")
    assert history.returncode == 0, history.stderr
    mapped = [orjson.loads(line) for line in history.stdout.splitlines()][-1]
    assert mapped["type"] == "CheckInRecorded"
    assert mapped["source"] == "jira"
    assert mapped["actor"] == "5b10ac8d82e05b22cc7d4ef5"
    assert orjson.loads(mapped["data"]) == {
        "key_result_id": "nps",
        "value": 44,
        "confidence": 0.85,
        "comment": "Jira OKR-17 updated by Mia Krystof",
    }
    assert mapped["occurred_at"].startswith("2026-11-20T10:00:00")


def test_a_write_key_cannot_read_and_a_read_key_reads(served: Served) -> None:
    with served.server.client(served.writer) as client:
        refused = client.get("/v1/orgs/northwind/progress")
    assert refused.status_code == 403
    assert refused.json()["reason_code"] == "forbidden"
    with served.server.client(served.reader) as client:
        assert client.get("/v1/orgs/northwind/coverage").status_code == 200
        assert client.get("/v1/orgs/globex/coverage").status_code == 403
    other = served.key(orgs=("globex",), scopes=(Scope.READ,), source=None)
    with served.server.client(other) as client:
        assert client.get("/v1/orgs/northwind/coverage").status_code == 403


def test_a_batch_mixing_every_outcome_answers_each_line_in_order(served: Served) -> None:
    """Forbidden lines first, between and last; accepted, duplicate (within the batch and of
    an earlier one), rejected by the rules, malformed; blank and CRLF lines: one outcome per
    submission, in line order, and each refusal recorded with its line."""
    first = orjson.dumps(check_in(value=11, source_event_id="mix-1"))
    lines = [
        orjson.dumps(check_in(source="crm", source_event_id="mix-f1")),  # 1 forbidden
        first,  # 2 accepted
        b"",  # 3 blank: no outcome
        first + b"\r",  # 4 duplicate (CRLF)
        orjson.dumps(check_in(org_id="globex", source_event_id="mix-f2")),  # 5 forbidden
        orjson.dumps(check_in(key_result_id="no-such-kr", source_event_id="mix-r")),  # 6
        b"[1, 2",  # 7 malformed
        orjson.dumps(check_in(value=12, source_event_id="mix-2")),  # 8 accepted
        orjson.dumps(check_in(type_name="KeyResultDefined", org_id="other")),  # 9 forbidden
    ]
    before = len(served.rejections())
    answer = post(served, served.writer, ndjson(lines), **{"Content-Type": NDJSON})
    assert answer.status_code == 200, answer.text
    outcomes = outcome_lines(answer.content)
    assert [(o["status"], o.get("reason_code")) for o in outcomes] == [
        ("rejected", "forbidden"),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "forbidden"),
        ("rejected", "unknown_reference"),
        ("rejected", "invalid_json"),
        ("accepted", None),
        ("rejected", "forbidden"),
    ]
    assert [o.get("line") for o in outcomes if o["status"] == "rejected"] == [1, 5, 6, 7, 9]
    assert outcomes[2]["event_id"] == outcomes[1]["event_id"]
    recorded = {r.line: r.reason for r in served.rejections()[before:]}
    assert recorded == {
        1: ReasonCode.FORBIDDEN,
        5: ReasonCode.FORBIDDEN,
        6: ReasonCode.UNKNOWN_REFERENCE,
        7: ReasonCode.INVALID_JSON,
        9: ReasonCode.FORBIDDEN,
    }


def test_a_batch_of_forbidden_lines_only_is_answered_and_recorded(served: Served) -> None:
    lines = [orjson.dumps(check_in(source="crm", source_event_id=f"only-f{n}")) for n in range(3)]
    before = len(served.rejections())
    answer = post(served, served.writer, ndjson(lines), **{"Content-Type": NDJSON})
    assert answer.status_code == 200, answer.text
    outcomes = outcome_lines(answer.content)
    assert [(o["reason_code"], o["line"]) for o in outcomes] == [
        ("forbidden", 1), ("forbidden", 2), ("forbidden", 3),
    ]  # fmt: skip
    recorded = served.rejections()[before:]
    assert [(r.reason, r.line, r.raw) for r in recorded] == [
        (ReasonCode.FORBIDDEN, n + 1, line) for n, line in enumerate(lines)
    ]


def test_the_idempotency_key_numbers_each_line_of_a_batch_around_refused_ones(
    served: Served,
) -> None:
    lines = [
        orjson.dumps(check_in(value=21, source_event_id=None)),
        orjson.dumps(check_in(source="crm", source_event_id=None)),  # forbidden
        orjson.dumps(check_in(value=23, source_event_id=None)),
    ]
    headers = {"Content-Type": NDJSON, "Idempotency-Key": "sheet-9"}
    first = outcome_lines(post(served, served.writer, ndjson(lines), **headers).content)
    again = outcome_lines(post(served, served.writer, ndjson(lines), **headers).content)
    assert [o["status"] for o in first] == ["accepted", "rejected", "accepted"]
    assert [o["status"] for o in again] == ["duplicate", "rejected", "duplicate"]
    assert [o["event_id"] for o in again[::2]] == [o["event_id"] for o in first[::2]]
    alone = orjson.dumps(check_in(value=23, source_event_id="sheet-9-3"))
    assert post(served, served.writer, alone).json()["status"] == "duplicate"
