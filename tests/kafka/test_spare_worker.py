"""A worker beyond the partitions' count is spare capacity: the group gives it nothing, and it
says it is ready (Faust runs no barrier for an assignment of nothing, so the worker reports
it itself: ``Worker.on_rebalance_complete``). A load balancer or docker-compose's healthcheck
would otherwise take it for a worker stuck in a rebalance."""

import time
from pathlib import Path

import pytest

from events.kafka_client import Connection
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.group_support import Group
from tests.kafka.store_support import page

pytestmark = pytest.mark.kafka

NOTHING = "assigned no partition"


def test_a_worker_given_no_partition_is_ready(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    group = Group(kafka, topics, tmp_path, TEST_PARTITIONS)
    names = [chr(ord("a") + i) for i in range(TEST_PARTITIONS)]
    try:
        for name in names:
            group.start(name)
        group.wait_spread(names, {})
        since = group.counts()
        spare = group.start("spare")
        group.wait_spread(names, since)  # the spare's join: the partitions stay with them
        deadline = time.monotonic() + 30
        while (answer := page(spare, "/healthz"))[0] != 200:
            assert spare.alive(), spare.log_tail()
            assert time.monotonic() < deadline, f"the spare is not ready: {answer}"
            time.sleep(0.2)
        health = answer[1]
        assert NOTHING in spare.log_path.read_text(errors="replace")
        assert health["assigned_partitions"] == {
            topics["intake"]: 0,
            topics["ledger"]: 0,
        }, health
    finally:
        group.stop_all()
