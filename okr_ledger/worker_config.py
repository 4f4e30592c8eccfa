"""The Kafka worker's configuration, from the settings: what :mod:`okr_ledger.worker_cli` needs
before the worker imports Faust (its sequencer process is made first), so imports little."""

from events.kafka_log import servers_from_url
from okr_ledger.settings import Settings
from processors.kafka_config import GroupTimings, Topics, WorkerConfig
from schemas.errors import ConfigurationError


def worker_config(settings: Settings) -> WorkerConfig:
    """The worker's configuration, from the ``OKR_`` settings."""
    url = settings.resolved_ledger_url
    if not url.startswith("kafka://"):
        raise ConfigurationError(f"the worker needs OKR_LEDGER_URL=kafka://..., not {url!r}")
    return WorkerConfig(
        servers=servers_from_url(url),
        app_id=settings.worker_app_id,
        topics=Topics(**settings.topic_names),
        data_dir=settings.data_dir,
        sequencer_batch_size=settings.sequencer_batch_size,
        projector_batch_size=settings.projector_batch_size,
        projector_batch_bytes=settings.projector_batch_bytes,
        sequencer_queue_bytes=settings.sequencer_queue_bytes,
        malloc_trim_s=settings.worker_malloc_trim_seconds,
        projector_linger_s=settings.projector_linger_ms / 1000,
        projector_idle_s=settings.projector_idle_ms / 1000,
        fetch_bytes=settings.kafka_fetch_bytes,
        policy=settings.policy,
        transactions=settings.kafka_transactions,
        sequencer_process=settings.worker_sequencer_process,
        state_files=settings.worker_state_files,
        projector_state_files=settings.worker_projector_state_files,
        projector_save_every=settings.projector_save_every,
        projector_retry_max_s=settings.projector_retry_max_seconds,
        projector_stall_s=settings.projector_stall_seconds,
        timings=GroupTimings(
            session_timeout_s=settings.kafka_session_timeout_seconds,
            heartbeat_interval_s=settings.kafka_heartbeat_interval_seconds,
            rebalance_timeout_s=settings.kafka_rebalance_timeout_seconds,
            max_poll_interval_s=settings.kafka_max_poll_interval_seconds,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        ),
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        log_level=settings.log_level,
    )
