"""The event-log contract on a real Kafka-protocol broker, plus what only Kafka promises."""

import uuid
from collections.abc import Iterator

import pytest

from events.kafka_admin import KEEP_FOREVER, TopicSpec, ensure_topics, okr_topics
from events.kafka_client import Admin, Connection, OutRecord, Producer, Reader
from events.kafka_log import KafkaEventLog
from events.kafka_records import encode_event, read_rejection
from events.ledger import Ledger
from events.log import ChainHead, EventLog
from events.outcomes import Accepted, Duplicate, Rejection
from events.reasons import ReasonCode
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_event_log
from processors.faust_app import shared_lanes
from schemas.errors import ConfigurationError, LedgerUnavailableError, SequenceConflictError
from tests.builders import NOW, chained_events, check_ins, org_setup
from tests.contract.event_log import EventLogContract
from tests.kafka.worker_support import open_kafka_log

pytestmark = pytest.mark.kafka

AT = "2026-11-23T12:00:00Z"


class TestKafkaEventLog(EventLogContract):
    consecutive_rejection_positions = False  # a commit marker takes an offset

    @pytest.fixture(autouse=True)
    def _topics(self, kafka: Connection, topics: dict[str, str]) -> None:
        self.kafka, self.topics = kafka, topics

    def open_log(self) -> EventLog:
        return open_kafka_log(self.kafka, self.topics)


@pytest.fixture
def log(kafka: Connection, topics: dict[str, str]) -> Iterator[KafkaEventLog]:
    log = open_kafka_log(kafka, topics)
    yield log
    log.close()


@pytest.fixture
def admin(kafka: Connection) -> Iterator[Admin]:
    admin = Admin(kafka)
    yield admin
    admin.close()


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def test_ensure_topics_is_idempotent_and_keeps_the_record_forever(
    kafka: Connection, admin: Admin
) -> None:
    prefix = unique("ensure")
    names = {role: f"{prefix}.{role}" for role in ("intake", "ledger", "rejections", "outcomes")}
    specs = okr_topics(**names, partitions=4)
    assert sorted(ensure_topics(kafka, specs)) == sorted(s.name for s in specs)
    assert ensure_topics(kafka, specs) == []
    for name in (names["ledger"], names["rejections"]):
        reported = admin.topic_configs(name)
        assert reported.get("retention.ms", "-1") == "-1"
        assert reported.get("cleanup.policy", "delete") == "delete"
    assert admin.partition_count(names["ledger"]) == 4
    assert admin.partition_count(names["rejections"]) == 4  # a lane per partition


def test_tansu_reports_the_ledger_retention(kafka: Connection, topics: dict[str, str]) -> None:
    """So the check above is not vacuous on the broker CI uses."""
    admin = Admin(kafka)
    try:
        assert admin.topic_configs(topics["ledger"])["retention.ms"] == "-1"
    finally:
        admin.close()


def test_ensure_topics_refuses_a_ledger_that_forgets(kafka: Connection, admin: Admin) -> None:
    name = unique("forgetful")
    assert admin.create_topic(name, 1, {"retention.ms": "604800000"})
    with pytest.raises(ConfigurationError, match=r"retention\.ms=604800000"):
        ensure_topics(kafka, [TopicSpec(name, 1, KEEP_FOREVER)])


def test_one_orgs_events_are_all_in_one_partition(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    orgs = ("acme", "globex", "initech", "umbrella", "hooli")
    log.append(chained_events(*orgs))
    reader = Reader(kafka)
    try:
        partitions_of_topic = reader.partitions(topics["ledger"])
        stored = list(reader.read(topics["ledger"], dict.fromkeys(partitions_of_topic)))
    finally:
        reader.close()
    partitions: dict[bytes | None, set[int]] = {}
    for record in stored:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert partitions == {org.encode(): {log.partition_of(org)} for org in orgs}


def test_a_partition_writer_writes_its_rejections_to_its_own_lane_only(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    """Every partition a worker's transaction writes is that partition's alone: the rejections
    of partition *p*'s writer go to rejections partition *p*, whatever org they name (on
    Tansu, a partition two transactional ids share can keep one's transaction unfinished
    behind the other's: docs/ARCHITECTURE.md, "One writer per partition")."""
    partitions = range(log.partition_count)
    assert log.rejection_lanes() == [str(p) for p in partitions]
    orgs = [f"org{i}" for i in range(8)]  # of every partition
    assert {log.partition_of(org) for org in orgs} == set(partitions)
    for p in partitions:
        writer = log.partition_writer(p, transactional_id=None)
        try:
            rejected = [
                Rejection(ReasonCode.INVALID_JSON, "not JSON", b"{", AT, org_id=org, line=p)
                for org in orgs
            ]
            writer.append([], [(r, ()) for r in rejected])
        finally:
            writer.close()
    reader = Reader(kafka)
    try:
        for p in partitions:
            lane = [read_rejection(r.value) for r in reader.read(topics["rejections"], {p: None})]
            assert [r.line for r in lane] == [p] * len(orgs)
            assert [r.org_id for r in lane] == orgs
    finally:
        reader.close()


def test_a_rejections_topic_of_fewer_partitions_than_the_ledger_is_reported() -> None:
    """A deployment made by an earlier version (one rejections partition) still runs, and the
    worker says how to give each partition its own (what `okr-ledger init` now makes)."""
    assert shared_lanes("okr.rejections", 6, 6) is None
    told = shared_lanes("okr.rejections", 6, 1)
    assert told is not None
    assert "okr.rejections has 1 partition(s) for 6 ledger partitions" in told
    assert "OKR_KAFKA_TOPIC_REJECTIONS" in told


def test_a_fresh_log_on_the_same_topics_reads_the_same_heads(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    log.append(chained_events("acme", "globex"))
    log.append(chained_events("initech"))
    other = open_kafka_log(kafka, topics)
    try:
        assert other.heads() == log.heads()
        assert len(other.heads()) == 3
    finally:
        other.close()


def test_reads_reach_the_end_of_a_large_batch(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    """Tansu lists a partition's end as its last batch's base offset + 1; reads must not stop."""
    events = chained_events("acme", check_in_count=993)
    log.append(events)
    other = open_kafka_log(kafka, topics)
    try:
        assert other.heads() == {"acme": ChainHead(1000, events[-1].hash)}
        assert [e.sequence for e in other.read("acme")] == list(range(1, 1001))
    finally:
        other.close()


def test_a_writer_with_a_stale_view_is_refused_and_writes_nothing(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    events = chained_events("acme")
    stale = open_kafka_log(kafka, topics)
    try:
        assert stale.heads() == {}
        log.append(events[:3])
        with pytest.raises(SequenceConflictError):
            stale.append(events[:3])
        assert list(stale.read("acme")) == events[:3]
        assert list(stale.orphans()) == []
    finally:
        stale.close()


def test_a_lost_race_is_reported_and_its_events_are_orphans(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer's record lands between the loser's check and its write."""
    winner, loser = chained_events("acme"), chained_events("acme")
    rival = open_kafka_log(kafka, topics)
    catch_up = log._catch_up

    def racing_catch_up(partitions: set[int]) -> set[int]:
        orphans = catch_up(partitions)
        if not rival.heads():
            rival.append(winner[:1])
        return orphans

    monkeypatch.setattr(log, "_catch_up", racing_catch_up)
    try:
        with pytest.raises(SequenceConflictError, match="another writer"):
            log.append(loser[:3])
        assert log.heads() == {"acme": ChainHead(1, winner[0].hash)}
        assert list(log.read("acme")) == winner[:1]
        assert list(log.orphans("acme")) == [e.to_record() for e in loser[:3]]
        rival.append(winner[1:])  # the chain goes on past the orphans
        assert list(rival.read()) == winner
    finally:
        rival.close()


def test_a_stray_record_in_the_ledger_topic_is_an_orphan_not_a_crash(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    events = chained_events("acme")
    log.append(events[:2])
    stray = Producer(kafka)
    try:
        stray.send_all([OutRecord(topics["ledger"], log.partition_of("acme"), b"acme", b"oops")])
    finally:
        stray.close()
    log.append(events[2:])
    assert list(log.read("acme")) == events
    assert list(log.orphans()) == [{"undecodable": "oops"}]


def test_a_valid_looking_record_in_another_partition_is_an_orphan_for_every_reader(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    """A record of acme's next sequence, produced by hand to a partition that is not acme's,
    must neither appear in whole-ledger reads nor block acme's next append."""
    events = chained_events("acme", check_in_count=4)
    log.append(events[:-1])
    elsewhere = next(p for p in range(6) if p != log.partition_of("acme"))
    stray = Producer(kafka)
    try:
        stray.send_all([OutRecord(topics["ledger"], elsewhere, b"acme", encode_event(events[-1]))])
    finally:
        stray.close()
    assert list(log.read()) == list(log.read("acme")) == events[:-1]
    assert log.heads() == {"acme": ChainHead(len(events) - 1, events[-2].hash)}
    log.append(events[-1:])
    assert list(log.read()) == events
    assert [o["sequence"] for o in log.orphans()] == [events[-1].sequence]


def test_missing_topics_are_a_clear_error_and_are_not_created(
    kafka: Connection, admin: Admin
) -> None:
    name = unique("missing")
    with pytest.raises(LedgerUnavailableError, match=f"no topic {name}.*ensure_topics"):
        KafkaEventLog(kafka.servers, ledger_topic=name, rejections_topic=name)
    assert name not in admin.topics()


def test_an_unreachable_broker_is_a_clear_error() -> None:
    with pytest.raises(LedgerUnavailableError, match=r"Kafka at 127\.0\.0\.1:9: cannot"):
        KafkaEventLog("127.0.0.1:9", timeout_s=0.5)


def test_the_ledger_service_runs_on_kafka(
    log: KafkaEventLog, kafka: Connection, topics: dict[str, str]
) -> None:
    submissions = [*org_setup("acme"), *check_ins(3, "acme"), b"{"]
    outcomes = list(Ledger(log, clock=lambda: NOW).submit_many((s, None) for s in submissions))
    assert [type(o) for o in outcomes] == [Accepted] * 10 + [Rejection]
    again = open_kafka_log(kafka, topics)
    try:
        repeated = Ledger(again, clock=lambda: NOW).submit_many((s, None) for s in submissions)
        assert [type(o) for o in repeated] == [Duplicate] * 10 + [Rejection]
        assert [r.raw for r in again.rejections()] == [b"{", b"{"]
        assert list(again.read("acme")) == [o.event for o in outcomes if isinstance(o, Accepted)]
    finally:
        again.close()


def test_the_wiring_opens_kafka_with_the_topics_of_the_settings(
    kafka: Connection, topics: dict[str, str]
) -> None:
    settings = Settings(
        ledger_url=f"kafka://{kafka.servers[0]}",
        kafka_topic_ledger=topics["ledger"],
        kafka_topic_rejections=topics["rejections"],
    )
    log = open_event_log(settings)
    try:
        assert isinstance(log, KafkaEventLog)
        assert (log.ledger_topic, log.rejections_topic) == (topics["ledger"], topics["rejections"])
        assert log.heads() == {}
    finally:
        log.close()
