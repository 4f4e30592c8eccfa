"""The settings that bound a worker's memory reach the worker: what a backlog may hold in the
sequencer's lanes and in the projector's batches, and how often the allocator is trimmed."""

from okr_ledger.settings import Settings
from okr_ledger.worker_config import worker_config
from processors.kafka_config import WorkerConfig


def test_the_memory_bounds_are_settings_that_reach_the_worker() -> None:
    defaults = worker_config(Settings(ledger_url="kafka://127.0.0.1:9092"))
    assert defaults.sequencer_queue_bytes == WorkerConfig(servers=()).sequencer_queue_bytes
    assert defaults.projector_batch_bytes == WorkerConfig(servers=()).projector_batch_bytes
    assert defaults.malloc_trim_s == WorkerConfig(servers=()).malloc_trim_s
    config = worker_config(
        Settings(
            ledger_url="kafka://127.0.0.1:9092",
            sequencer_queue_bytes=300_000,
            projector_batch_bytes=2_000_000,
            worker_malloc_trim_seconds=0,
        )
    )
    assert config.sequencer_queue_bytes == 300_000
    assert config.projector_batch_bytes == 2_000_000
    assert config.malloc_trim_s == 0
