"""What the sequencer-core tests on the broker share: topics of a few partitions, an org per
partition, its intake in batches, and cores writing to one place."""

import uuid
from dataclasses import dataclass
from pathlib import Path

from events.intake_wire import intake_message
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, partition_for
from events.kafka_records import org_key
from processors.kafka_config import Topics, WorkerConfig
from processors.kafka_sequencer import IntakeRecord
from processors.sequencer_core import SequencerCore, Verdict
from tests.builders import check_ins, org_setup

PARTITIONS = 3
TIMEOUT_S = 15.0
"""The Kafka timeout of the cores, and so the restore reader's bound."""


def new_topics(kafka: Connection) -> Topics:
    suffix = uuid.uuid4().hex[:12]
    names = {r: f"test.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    ensure_topics(kafka, okr_topics(**names, partitions=PARTITIONS))
    return Topics(**names)


def org_of(partition: int) -> str:
    return next(
        org
        for org in (f"org{i}" for i in range(1000))
        if partition_for(org_key(org), PARTITIONS) == partition
    )


def intake_batches(partition: int, batches: int, size: int = 10) -> list[list[IntakeRecord]]:
    """The org's setup, then batches of check-ins, each with a rejection (broken JSON): every
    batch's transaction writes the ledger partition, the rejections topic and the outcomes."""
    org = org_of(partition)
    raws = org_setup(org)
    for _ in range(batches):
        raws += [*check_ins(size - 1, org), b"{broken"]
    records = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"p{partition}-s{offset}", None)
        records.append(IntakeRecord(partition, offset, message.value, message.headers, message.key))
    first = len(org_setup(org))
    return [records[:first]] + [records[i : i + size] for i in range(first, len(records), size)]


def core_at(address: str, topics: Topics, data_dir: Path, app_id: str) -> SequencerCore:
    config = WorkerConfig(
        servers=(address,), app_id=app_id, topics=topics, data_dir=data_dir, timeout_s=TIMEOUT_S
    )
    return SequencerCore(config)


def write_all(core: SequencerCore, partition: int, batches: list[list[IntakeRecord]]) -> None:
    for batch in batches:
        assert core.sequence(partition, batch).verdict is Verdict.WRITTEN


@dataclass(frozen=True)
class Place:
    """Where the workers of one test write: the broker, the topics, the app id."""

    address: str
    topics: Topics
    app_id: str

    def core(self, data_dir: Path) -> SequencerCore:
        return core_at(self.address, self.topics, data_dir, self.app_id)
