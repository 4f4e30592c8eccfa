"""The HTTP server on the Kafka runtime: the real Tansu broker, a real worker, two replicas.

The refusals are recorded by the worker (only it writes the rejections topic), from intake
records carrying the ``okr-refusal`` headers; a revocation reaches both replicas through the
compacted keys topic. Replica b is ``serve --workers 2``: two processes, each a replica of
its own.
"""

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from events.intake_wire import (
    REFUSAL_HEADER,
    REFUSAL_MESSAGE_HEADER,
    SUBMISSION_HEADER,
    parse_intake,
)
from events.kafka_admin import TopicSpec, ensure_topics
from events.kafka_client import Connection
from events.kafka_log import KafkaEventLog
from events.outcomes import Rejection
from events.reasons import ReasonCode
from okr_ledger.demo import demo_submissions
from okr_ledger.http.key_stores import KafkaKeyStore
from okr_ledger.http.keys import KeyStore, Scope
from okr_ledger.kafka_runtime import COMPACTED
from okr_ledger.settings import Settings
from tests.http.key_store_contract import KeyStoreContract, eventually
from tests.http.support import (
    HOOKS,
    JIRA_PAYLOAD,
    Server,
    check_in,
    cli,
    kafka_server_env,
    kafka_settings,
    make_key,
    ndjson,
    outcome_lines,
    running,
)
from tests.kafka.projector_support import projecting_worker

pytestmark = pytest.mark.kafka


class TestKafkaKeyStore(KeyStoreContract):
    @pytest.fixture(autouse=True)
    def _topic(self, kafka: Connection) -> None:
        self.kafka = kafka
        self.topic = f"test.{uuid.uuid4().hex[:12]}.keys"
        ensure_topics(kafka, [TopicSpec(self.topic, 1, COMPACTED)])

    def open_store(self, follow: bool = False) -> KeyStore:
        return KafkaKeyStore(self.kafka.servers, self.topic, follow=follow, refresh_s=0.1)

    def test_a_malformed_or_misfiled_record_is_ignored(self, store: KeyStore) -> None:
        from events.kafka_client import OutRecord, Producer
        from okr_ledger.http.key_stores import encode_record
        from okr_ledger.http.keys import authenticate, new_key

        token, record = new_key(scopes=(Scope.WRITE,), orgs=("acme",), source="jira")
        producer = Producer(self.kafka)
        try:
            producer.send_all(
                [
                    OutRecord(self.topic, 0, b"x", b"not json"),
                    OutRecord(self.topic, 0, b"other-id", encode_record(record)),
                ]
            )
        finally:
            producer.close()
        again = self.open_store()
        try:
            assert authenticate(again, token) is None
            assert again.records() == []
        finally:
            again.close()


def test_refusal_headers_are_parsed_with_bounds() -> None:
    good = parse_intake(
        b"{}", [(REFUSAL_HEADER, b"forbidden"), (REFUSAL_MESSAGE_HEADER, b"no")], 65536
    )
    assert good.refusal is not None
    assert good.refusal.reason is ReasonCode.FORBIDDEN
    assert good.problems == ()
    for headers, loc in (
        ([(REFUSAL_HEADER, b"forbidden")], "headers.okr-refusal-message"),
        ([(REFUSAL_HEADER, b"conflict"), (REFUSAL_MESSAGE_HEADER, b"x")], "headers.okr-refusal"),
        ([(REFUSAL_HEADER, b"forbidden"), (REFUSAL_MESSAGE_HEADER, b"")], REFUSAL_MESSAGE_HEADER),
        ([(REFUSAL_HEADER, b"forbidden"), (REFUSAL_MESSAGE_HEADER, b"x" * 1001)], "message"),
        ([(REFUSAL_HEADER, b"forbidden"), (REFUSAL_MESSAGE_HEADER, b"\xff")], "message"),
        ([(REFUSAL_HEADER, b"forbidden"), (REFUSAL_HEADER, b"forbidden")], "okr-refusal"),
    ):
        parsed = parse_intake(b"{}", [(SUBMISSION_HEADER, b"s"), *headers], 65536)
        assert parsed.refusal is None, headers
        assert parsed.problems, headers
        assert loc in parsed.problems[0]["loc"], (headers, parsed.problems)


def _rejections(settings: Settings) -> list[Rejection]:
    log = KafkaEventLog.from_url(
        settings.resolved_ledger_url,
        ledger_topic=settings.kafka_topic_ledger,
        rejections_topic=settings.kafka_topic_rejections,
    )
    try:
        return list(log.rejections())
    finally:
        log.close()


@pytest.fixture
def cluster(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> Iterator[tuple[dict[str, str], Settings, Server, Server]]:
    worker = projecting_worker(kafka, topics, tmp_path)
    env = kafka_server_env(worker.env, topics, OKR_HTTP_HOOKS_FILE=str(HOOKS))
    done = cli(env, "init")
    assert done.returncode == 0, done.stderr
    assert f"{env['OKR_KAFKA_TOPIC_KEYS']} (created)" in done.stdout
    settings = kafka_settings(env, topics)
    worker.start()
    try:
        worker.wait_ready(1)
        with (
            running(env, tmp_path / "a.log") as replica_a,
            running({**env, "OKR_HTTP_WORKERS": "2"}, tmp_path / "b.log") as replica_b,
        ):
            yield env, settings, replica_a, replica_b
    finally:
        worker.stop()


def _source(raw: bytes) -> object:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return document.get("source") if isinstance(document, dict) else None


def _post(server: Server, key: str, body: bytes, **headers: str) -> Any:
    with server.client(key) as client:
        return client.post("/v1/submissions", content=body, headers=headers)


def test_two_replicas_submit_refuse_read_and_share_revocations(
    cluster: tuple[dict[str, str], Settings, Server, Server],
) -> None:
    env, settings, a, b = cluster
    created = cli(env, "keys", "create", "--source", "demo", "--org", "northwind", "--json")
    assert created.returncode == 0, created.stderr
    demo_key = orjson.loads(created.stdout)["key"]
    jira, jira_id = make_key(settings)
    reader, _ = make_key(settings, source=None, scopes=(Scope.READ,))
    eventually(lambda: _post(b, demo_key, b"{}").status_code != 401, 15)

    demo = demo_submissions()
    batch = _post(a, demo_key, ndjson(demo), **{"Content-Type": "application/x-ndjson"})
    assert batch.status_code == 200, batch.text
    outcomes = outcome_lines(batch.content)
    assert len(outcomes) == len(demo)
    foreign = [n for n, raw in enumerate(demo) if _source(raw) in ("jira", "crm")]
    assert len(foreign) == 35  # the demo's jira and crm lines: not this key's source
    assert [o.get("reason_code") for o in outcomes if o.get("line", 0) - 1 in foreign] == [
        "forbidden"
    ] * len(foreign)
    assert sum(o["status"] == "accepted" for o in outcomes) > 40

    body = orjson.dumps(check_in(source_event_id="kafka-1"))
    first = _post(b, jira, body)
    assert first.status_code == 201, first.text
    retry = _post(a, jira, body)
    assert retry.status_code == 200
    assert retry.json()["event_id"] == first.json()["event_id"]
    with b.client(jira) as client:
        hooked = client.post("/v1/hooks/jira-check-in", content=JIRA_PAYLOAD.read_bytes())
        no_hook = client.post("/v1/hooks/jira-checkin", content=b'{"typo": 1}')
        # Over what one intake record carries (a stand-in), under the hooks' limit (1 MiB).
        big_no_hook = client.post("/v1/hooks/nosuch", content=b" " * 1_000_100 + b"{}")
    assert hooked.status_code == 201, hooked.text
    assert no_hook.status_code == 404, no_hook.text
    assert no_hook.json()["outcome"]["reason_code"] == "unknown_hook"
    assert big_no_hook.status_code == 404, big_no_hook.text
    assert big_no_hook.json()["outcome"]["reason_code"] == "unknown_hook"

    keyed = orjson.dumps(check_in(source_event_id=None))  # the header is its source's id
    first_keyed = _post(a, jira, keyed, **{"Idempotency-Key": "kafka-k1"})
    assert first_keyed.status_code == 201, first_keyed.text
    again_keyed = _post(b, jira, keyed, **{"Idempotency-Key": "kafka-k1"})
    assert again_keyed.status_code == 200, again_keyed.text
    assert again_keyed.json()["event_id"] == first_keyed.json()["event_id"]
    for replica in (a, b):
        for authorization in ("", f"Basic {jira}", "Bearer not-a-key", f"Bearer {jira}x"):
            with httpx.Client(base_url=replica.base, timeout=30) as anonymous:
                headers = {"Authorization": authorization} if authorization else {}
                denied = anonymous.post("/v1/submissions", content=body, headers=headers)
            assert denied.status_code == 401, (authorization, denied.text)
        with replica.client(jira) as client:  # a source's key may not read
            assert client.get("/v1/orgs/northwind/progress").status_code == 403

    spoofs = [
        (a, orjson.dumps(check_in(org_id="globex", source_event_id="s1"))),
        (b, orjson.dumps(check_in(source="crm", source_event_id="s2"))),
        (a, b'{"org_id": "northwind", "source": "jira", "org_id": "globex"}'),
        (b, orjson.dumps(check_in(org_id="Northwind", source_event_id="s3"))),
    ]
    for replica, spoof in spoofs:
        refused = _post(replica, jira, spoof)
        assert refused.status_code == 403, refused.text
        assert refused.json()["outcome"]["reason_code"] == "forbidden"
    malformed = _post(a, jira, b'{"type": ')
    assert malformed.status_code == 400
    big = orjson.dumps(check_in(source_event_id="big")) + b" " * 100_000
    too_large = _post(b, jira, big)
    assert too_large.status_code == 413

    recorded = _rejections(settings)
    forbidden = [r for r in recorded if r.reason is ReasonCode.FORBIDDEN]
    assert [r.line for r in forbidden[: len(foreign)]] == [n + 1 for n in foreign]
    forbidden = forbidden[len(foreign) :]
    assert [r.raw for r in forbidden] == [spoof for _, spoof in spoofs]
    assert all(r.message.startswith(f"key {jira_id} ") for r in forbidden)
    assert forbidden[0].org_id == "globex"
    assert any(r.reason is ReasonCode.INVALID_JSON and r.raw == b'{"type":' for r in recorded)
    no_hook_recorded, big_recorded = [r for r in recorded if r.reason is ReasonCode.UNKNOWN_HOOK]
    assert no_hook_recorded.raw == b'{"typo": 1}'
    assert big_recorded.raw_length == 1_000_102
    assert big_recorded.raw_sha256 == hashlib.sha256(b" " * 1_000_100 + b"{}").hexdigest()
    large = [r for r in recorded if r.reason is ReasonCode.TOO_LARGE and r.raw_length == len(big)]
    assert large[0].raw_sha256 == hashlib.sha256(big).hexdigest()

    def projected() -> bool:  # the hook's check-in, the last event, is in the projections
        with a.client(reader) as client:
            answer = client.get("/v1/orgs/northwind/history/nps")
        return answer.status_code == 200 and "Jira OKR-17" in answer.text

    eventually(projected, 60)
    with a.client(reader) as client:
        # At a fixed business time: expected progress and status depend on it.
        served = client.get("/v1/orgs/northwind/cascade?at=2026-11-10T00:00:00Z")
    assert served.status_code == 200, served.text
    on_cli = cli(env, "cascade", "--org", "northwind", "--at", "2026-11-10", "--json")
    assert on_cli.returncode == 0, on_cli.stderr
    assert served.text == on_cli.stdout

    revoked = cli(env, "keys", "revoke", jira_id)
    assert revoked.returncode == 0, revoked.stderr
    for replica in (a, b):

        def refused(r: Server = replica) -> bool:
            return bool(_post(r, jira, orjson.dumps(check_in())).status_code == 401)

        assert eventually(refused, 10) < 5
