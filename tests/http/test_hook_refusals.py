"""Every refusal of POST /v1/hooks/{name} is recorded, as one of POST /v1/submissions is: the
mapped submission (or the payload that could not be mapped) in the ledger's rejection log, with
the reason code the answer gave. Only a request without a valid key is not recorded."""

import hashlib

import orjson
import pytest

from events.outcomes import Rejection
from events.reasons import ReasonCode
from okr_ledger.http.hooks import load_hooks
from tests.http.conftest import Served
from tests.http.support import HOOKS, JIRA_PAYLOAD

PAYLOAD = orjson.loads(JIRA_PAYLOAD.read_bytes())


def hook(served: Served, name: str, body: bytes, key: str | None = None) -> tuple[int, Rejection]:
    """Post ``body`` to hook ``name``: the answer's status and the one rejection it recorded,
    whose reason code the answer names."""
    before = len(served.rejections())
    with served.server.client(key or served.writer) as client:
        answer = client.post(f"/v1/hooks/{name}", content=body)
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    problem = answer.json()
    (recorded,) = served.rejections()[before:]
    assert recorded.reason.value == problem["reason_code"] == problem["outcome"]["reason_code"]
    assert problem["outcome"]["status"] == "rejected"
    return answer.status_code, recorded


def mapped(name: str) -> bytes:
    """What hook ``name`` makes of the Jira payload, sent with the writer key (source jira)."""
    return orjson.dumps(load_hooks(HOOKS)[name].submission(PAYLOAD, "jira"))


def test_a_hook_mapping_to_another_org_is_403_and_recorded_as_forbidden(served: Served) -> None:
    status, recorded = hook(served, "other-org", JIRA_PAYLOAD.read_bytes())
    assert status == 403
    assert recorded.reason is ReasonCode.FORBIDDEN
    assert recorded.raw == mapped("other-org")
    assert recorded.org_id == "globex"
    assert recorded.message.startswith("key ")


def test_a_hook_taking_its_source_from_the_payload_is_403_and_recorded(served: Served) -> None:
    status, recorded = hook(served, "payload-source", JIRA_PAYLOAD.read_bytes())
    assert status == 403
    assert recorded.reason is ReasonCode.FORBIDDEN
    assert recorded.raw == mapped("payload-source")
    assert orjson.loads(recorded.raw)["source"] == "OKR"


@pytest.mark.parametrize("body", [b"<xml/>", b'{"timestamp": ', b"\xff\xfe", b"1e400"])
def test_a_hook_payload_that_is_not_json_is_400_and_recorded_as_sent(
    served: Served, body: bytes
) -> None:
    status, recorded = hook(served, "jira-check-in", body)
    assert status == 400
    assert recorded.reason is ReasonCode.INVALID_JSON
    assert recorded.raw == body


@pytest.mark.parametrize("body", [b"[1, 2]", b"{}", b'"text"', b'{"issue": {"fields": 7}}'])
def test_a_hook_payload_the_mapping_finds_nothing_in_is_422_and_recorded(
    served: Served, body: bytes
) -> None:
    """The fields the mapping found nothing for are left out: the rules reject the
    submission, naming them."""
    status, recorded = hook(served, "jira-check-in", body)
    assert status == 422
    assert recorded.reason is ReasonCode.SCHEMA_VIOLATION
    assert orjson.loads(recorded.raw) == {
        "type": "CheckInRecorded",
        "org_id": "northwind",  # a literal in the mapping
        "source": "jira",
        "data": {},
    }


def test_a_hook_payload_over_the_limit_is_413_and_recorded_with_its_length_and_hash(
    served: Served,
) -> None:
    body = JIRA_PAYLOAD.read_bytes() + b" " * (1 << 20)
    status, recorded = hook(served, "jira-check-in", body)
    assert status == 413
    assert recorded.reason is ReasonCode.TOO_LARGE
    assert recorded.raw_length == len(body)
    assert recorded.raw_sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("name", ["jira-checkin", "x" + "%C3%A9" * 600, "x" * 5000])
def test_a_payload_for_no_hook_is_404_and_recorded_as_sent(served: Served, name: str) -> None:
    """A source's URL with a typo: the payload is kept, under a message bounded whatever the
    name's length (a Kafka refusal's message is at most 1,000 bytes)."""
    body = JIRA_PAYLOAD.read_bytes()
    with served.server.client(served.writer) as client:
        suggested = client.post(f"/v1/hooks/{name}", content=b"{}").json()["suggestions"]
    status, recorded = hook(served, name, body)
    assert status == 404
    assert recorded.reason is ReasonCode.UNKNOWN_HOOK
    assert recorded.raw == body
    assert recorded.message.startswith("unknown hook '")
    assert len(recorded.message.encode()) <= 1000
    assert suggested == (["jira-check-in"] if name == "jira-checkin" else [])
    assert recorded.org_id is None  # a tool's payload claims no org


def test_a_payload_for_no_hook_is_filed_under_no_org_whatever_it_holds(served: Served) -> None:
    """A tool's payload is not a submission: its ``org_id`` or ``type`` fields are not claims
    of the sender's (a key of one org could otherwise file rejections under another)."""
    body = b'{"org_id": "globex", "type": "issue_updated", "source": "crm", "event_id": "e"}'
    status, recorded = hook(served, "nosuch", body)
    assert status == 404
    assert (recorded.reason, recorded.raw) == (ReasonCode.UNKNOWN_HOOK, body)
    assert (recorded.org_id, recorded.type, recorded.source, recorded.event_id) == (None,) * 4


def test_a_hook_without_a_valid_key_is_401_and_not_recorded(served: Served) -> None:
    before = len(served.rejections())
    with served.server.client("okr_000000000000_" + "A" * 43) as client:
        answer = client.post("/v1/hooks/other-org", content=JIRA_PAYLOAD.read_bytes())
    assert answer.status_code == 401
    assert len(served.rejections()) == before


@pytest.mark.parametrize("depth", [253, 300, 1000])
def test_a_mapped_value_nested_too_deep_to_write_is_left_out_for_the_rules_to_name(
    served: Served, depth: int
) -> None:
    """orjson reads 1,024 levels and writes 254: a value the mapping found that cannot be
    written inside a submission is one the mapping failed on (left out), never a 500."""
    payload = orjson.loads(JIRA_PAYLOAD.read_bytes())
    payload["issue"]["fields"]["customfield_10043"] = "DEEP"
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    body = orjson.dumps(payload).replace(b'"DEEP"', deep)  # orjson could not write it
    status, recorded = hook(served, "jira-check-in", body)
    assert status == 422
    assert recorded.reason is ReasonCode.SCHEMA_VIOLATION
    assert "value" not in orjson.loads(recorded.raw)["data"]
