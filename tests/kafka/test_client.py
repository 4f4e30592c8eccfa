"""The Python client, on the embedded ledger and on Kafka (worker as a subprocess)."""

from pathlib import Path

import orjson
import pytest

from events.kafka_client import Connection
from okr_ledger.client import LedgerClient
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from tests.builders import org_setup, submission
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.worker_support import running_worker

pytestmark = pytest.mark.kafka


SETUP = org_setup("acme")


def exercise(client: LedgerClient, setup: list[bytes] = SETUP) -> list[SubmitOutcome]:
    """The same submissions on either backend: a dict, bytes, a duplicate, bad input."""
    first = client.submit(orjson.loads(setup[0]))
    assert (first.status, first.org_id, first.sequence, first.ok) == ("accepted", "acme", 1, True)
    assert first.event_id
    assert first.hash
    rest = client.submit_many(
        [*setup[1:], setup[0], b"{oops", submission("ThemeAdded", {}, org_id="acme")]
    )
    assert [o.status for o in rest[-3:]] == ["duplicate", "rejected", "rejected"]
    assert [o.reason_code for o in rest[-2:]] == ["invalid_json", "schema_violation"]
    assert rest[-2].message
    assert not rest[-2].ok
    assert [o.sequence for o in rest[: len(setup) - 1]] == list(range(2, len(setup) + 1))
    return [first, *rest]


def test_client_on_the_embedded_ledger(tmp_path: Path) -> None:
    with LedgerClient(f"sqlite:///{tmp_path / 'ledger.db'}") as client:
        exercise(client, org_setup("acme"))


def test_client_on_kafka_gives_the_same_outcomes(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    with LedgerClient(f"sqlite:///{tmp_path / 'ledger.db'}") as client:
        embedded = exercise(client)
    settings = Settings(
        ledger_url=f"kafka://{kafka.servers[0]}",
        kafka_topic_intake=topics["intake"],
        kafka_topic_outcomes=topics["outcomes"],
        kafka_partitions=TEST_PARTITIONS,
        submit_timeout_seconds=20,
    )
    with running_worker(kafka, topics, tmp_path) as worker, LedgerClient(settings=settings) as c:
        worker.wait_ready(1)
        on_kafka = exercise(c)
    assert [(o.status, o.event_id, o.sequence, o.reason_code) for o in on_kafka] == [
        (o.status, o.event_id, o.sequence, o.reason_code) for o in embedded
    ]
