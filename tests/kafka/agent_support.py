"""The projector agent in process, without a broker: the records a consumer hands it (an org's
chained events) and the tables they fill."""

from dataclasses import dataclass

from events.kafka_records import encode_event, org_key
from tests.builders import chained_events

TABLES = ("audit_events", "check_in_versions", "key_result_versions")


@dataclass(frozen=True, slots=True)
class Record:
    """What the consumer hands over: an aiokafka record's offset, key and value."""

    offset: int
    key: bytes
    value: bytes


def records() -> list[Record]:
    events = chained_events("acme", check_in_count=40)
    return [Record(i, org_key(e.org_id), encode_event(e)) for i, e in enumerate(events)]


async def no_progress(partition: int) -> tuple[int | None, int | None]:
    return None, None
