"""The aiokafka consumer both Kafka runtimes read with: manual assignment, no group.

Neither the sequencer nor the projector commits offsets; where they resume comes from their
outputs (the ledger and rejection headers, the projection checkpoints), so a consumer group
would only add a rebalance to every start.
"""

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]


def manual_consumer(servers: Sequence[str], client_id: str) -> Any:
    """An unstarted consumer; the caller assigns and seeks its partitions."""
    return AIOKafkaConsumer(
        bootstrap_servers=list(servers),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
