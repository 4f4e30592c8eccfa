"""``verify`` and ``export`` on a Kafka ledger check and write the record values byte for byte.

A Kafka record cannot be edited, but anyone who may produce to the ledger topic can append one:
here, the org's next event with bytes that keep its JSON value (the chain rule admits it), or a
malformed value under the org's key in its partition (the chain rule skips it; ``verify`` must
still report it, by its offset).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from events.canonical import canonical_bytes
from events.kafka_client import Connection, OutRecord, Producer
from events.kafka_log import KafkaEventLog
from events.kafka_records import org_key
from okr_ledger.cli import app
from schemas.envelope import LedgerEvent
from tests.builders import chained_events
from tests.kafka.worker_support import open_kafka_log
from tests.ledger.byte_tampering import MALFORMED, SAME_VALUE, same_value

pytestmark = pytest.mark.kafka


def invoke(kafka: Connection, topics: dict[str, str], tmp: Path, *args: str) -> Result:
    """``okr-ledger ARGS`` in process, on the test's Kafka topics."""
    env = {
        "OKR_LEDGER_URL": f"kafka://{kafka.servers[0]}",
        "OKR_KAFKA_TOPIC_LEDGER": topics["ledger"],
        "OKR_KAFKA_TOPIC_REJECTIONS": topics["rejections"],
        "OKR_DATA_DIR": str(tmp / "data"),
        "OKR_CLICKHOUSE_URL": None,
    }
    return CliRunner().invoke(app, list(args), env=env)


def run(kafka: Connection, topics: dict[str, str], tmp: Path, *args: str) -> Result:
    """:func:`invoke`, which must end by an exit code, not an exception."""
    result = invoke(kafka, topics, tmp, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.fixture
def ledger(
    kafka: Connection, topics: dict[str, str]
) -> Iterator[tuple[KafkaEventLog, LedgerEvent]]:
    """acme's ledger without its last event, and that event (for a forger to append)."""
    events = chained_events("acme", "globex", check_in_count=2)
    last = events[len(events) // 2 - 1]
    assert (last.org_id, last.sequence) == ("acme", 9)
    log = open_kafka_log(kafka, topics)
    log.append([e for e in events if e is not last])
    yield log, last
    log.close()


def produce(
    kafka: Connection, topics: dict[str, str], partition: int, key: bytes, value: bytes
) -> int:
    producer = Producer(kafka)
    try:
        (offset,) = producer.send_all([OutRecord(topics["ledger"], partition, key, value)])
    finally:
        producer.close()
    return offset


def verdict(kafka: Connection, topics: dict[str, str], tmp: Path) -> tuple[int, dict[str, Any]]:
    result = run(kafka, topics, tmp, "verify", "--json")
    return result.exit_code, orjson.loads(result.stdout)


def test_an_intact_kafka_ledger_verifies_and_exports_its_record_values(
    kafka: Connection,
    topics: dict[str, str],
    tmp_path: Path,
    ledger: tuple[KafkaEventLog, LedgerEvent],
) -> None:
    log, last = ledger
    log.append([last])
    code, report = verdict(kafka, topics, tmp_path)
    assert (code, [(o["org_id"], o["ok"], o["events"]) for o in report["orgs"]]) == (
        0,
        [("acme", True, 9), ("globex", True, 9)],
    )
    exported = run(kafka, topics, tmp_path, "export", "--org", "acme").stdout_bytes
    assert exported == b"".join(canonical_bytes(e.to_record()) + b"\n" for e in log.read("acme"))


@pytest.mark.parametrize("edit", SAME_VALUE)
def test_an_appended_record_that_keeps_the_json_value_is_named(
    kafka: Connection,
    topics: dict[str, str],
    tmp_path: Path,
    ledger: tuple[KafkaEventLog, LedgerEvent],
    edit: str,
) -> None:
    log, last = ledger
    value = same_value(canonical_bytes(last.to_record()), edit)
    offset = produce(kafka, topics, log.partition_of("acme"), b"acme", value)
    assert [e.sequence for e in log.read("acme")][-1] == 9  # the chain rule admits it
    code, report = verdict(kafka, topics, tmp_path)
    assert (code, report["org_id"], report["first_bad_sequence"]) == (4, "acme", 9)
    assert report["location"] == f"partition {log.partition_of('acme')}, offset {offset}"
    expected = "appears twice" if edit.startswith("duplicated_key") else "canonical form"
    assert expected in report["problem"]
    exported = run(kafka, topics, tmp_path, "export", "--org", "acme").stdout_bytes
    assert exported.splitlines(keepends=True)[-1] == value + b"\n"


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_record_under_the_orgs_key_is_named_by_its_offset(
    kafka: Connection,
    topics: dict[str, str],
    tmp_path: Path,
    ledger: tuple[KafkaEventLog, LedgerEvent],
    kind: str,
) -> None:
    log, last = ledger
    value = MALFORMED[kind](canonical_bytes(last.to_record()))
    partition = log.partition_of("acme")
    offset = produce(kafka, topics, partition, org_key("acme"), value)
    log.append([last])  # the chain goes on past it: readers skip it
    assert [e.sequence for e in log.read("acme")] == list(range(1, 10))
    code, report = verdict(kafka, topics, tmp_path)
    assert code == 4
    where = f"partition {partition}, offset {offset}"
    assert (report["org_id"], report["first_bad_sequence"], report["location"]) == (
        "acme",
        None,
        where,
    )
    assert report["problem"].startswith("malformed: ")
    assert {o["org_id"]: o["ok"] for o in report["orgs"]} == {"acme": False, "globex": True}
    text = run(kafka, topics, tmp_path, "verify")
    assert f"BROKEN acme: {where}: malformed: " in text.stdout
    exported = run(kafka, topics, tmp_path, "export", "--org", "acme").stdout_bytes
    assert value + b"\n" in exported


def test_records_outside_an_orgs_key_and_partition_are_not_its_ledger(
    kafka: Connection,
    topics: dict[str, str],
    tmp_path: Path,
    ledger: tuple[KafkaEventLog, LedgerEvent],
) -> None:
    """The chain rule's orphans: a well-formed lost race, and junk under no org's key or in
    another partition. No reader counts them, and no writer of the ledger is to blame."""
    log, last = ledger
    home = log.partition_of("acme")
    elsewhere = next(p for p in range(3) if p != home)
    produce(kafka, topics, home, b"acme", canonical_bytes(last.to_record()))
    produce(kafka, topics, home, b"acme", canonical_bytes(last.to_record()))  # a repeat
    produce(kafka, topics, elsewhere, b"acme", b"junk")
    produce(kafka, topics, home, b"\xff\xfe", b"junk")
    code, report = verdict(kafka, topics, tmp_path)
    assert code == 0, report


def test_a_record_in_the_rejections_topic_that_is_not_a_rejection_is_listed_as_invalid(
    kafka: Connection,
    topics: dict[str, str],
    tmp_path: Path,
    ledger: tuple[KafkaEventLog, LedgerEvent],
) -> None:
    """A foreign write to the rejections topic stops no reader: it keeps its place and is
    listed as an ``invalid_record`` rejection holding its bytes."""
    producer = Producer(kafka)
    try:
        producer.send_all([OutRecord(topics["rejections"], 0, None, b'{"x":1}')])
    finally:
        producer.close()
    result = invoke(kafka, topics, tmp_path, "rejections", "--json")
    assert result.exit_code == 0, result.output
    listed = [orjson.loads(line) for line in result.output.splitlines()]
    assert listed[-1]["reason_code"] == "invalid_record"
    assert listed[-1]["raw"] == '{"x":1}'
