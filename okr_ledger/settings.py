"""Configuration, from ``OKR_*`` environment variables (or a ``.env`` file)."""

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.ledger import DEFAULT_BATCH_BYTES
from events.sequencer import MAX_SUBMISSION_BYTES, Policy
from events.sqlite_log import DEFAULT_RANGE_EVENTS

if TYPE_CHECKING:  # the projection side: imported by the commands that query, not by submit
    from projections.readonly_sql import QueryLimits


MAX_DEFAULT_VERIFY_PROCESSES = 4
"""The most processes ``verify`` takes unasked: the CPUs a process may run on (its affinity)
count a container's host, not its CPU quota, and each process costs a start-up (~0.3 s of
CPU) and its memory; 4 already verify 1,000,000 events in well under a second each."""


def default_verify_processes() -> int:
    """The CPUs this process may run on (its affinity; the machine's count elsewhere), at most
    :data:`MAX_DEFAULT_VERIFY_PROCESSES`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        cpus = os.cpu_count() or 1
    return min(cpus, MAX_DEFAULT_VERIFY_PROCESSES)


class Settings(BaseSettings):
    """Every setting of OKR Ledger. The embedded default needs none of them."""

    model_config = SettingsConfigDict(env_prefix="OKR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".okr-ledger"), description="Where embedded data lives.")
    ledger_url: str | None = Field(
        default=None,
        description="sqlite:///path (default: sqlite:///<data_dir>/ledger.db) or kafka://host:port",
    )
    clickhouse_url: str | None = Field(
        default=None,
        description="chdb:///path (default: chdb:///<data_dir>/clickhouse) or http(s)://host:8123",
    )
    clock_skew_seconds: float = Field(
        default=300.0, ge=0, description="How far occurred_at may lie in the future."
    )
    max_submission_bytes: int = Field(default=MAX_SUBMISSION_BYTES, ge=1024)
    submit_batch_size: int = Field(
        default=1000, ge=1, description="Submissions per ledger transaction (at most)."
    )
    submit_batch_bytes: int = Field(
        default=DEFAULT_BATCH_BYTES,
        ge=1,
        description="Bytes of submissions after which a ledger transaction takes no more.",
    )
    over_focus_limit: int = Field(
        default=5, ge=1, description="Objectives per unit and period above which it is flagged."
    )
    kafka_topic_intake: str = Field(
        default="okr.intake",
        description="Kafka topic of submissions (key: org_id, value: the submission's JSON).",
    )
    kafka_topic_ledger: str = Field(
        default="okr.ledger",
        description="Kafka topic of accepted events, keyed by org_id, kept forever: the record.",
    )
    kafka_topic_rejections: str = Field(
        default="okr.rejections",
        description="Kafka topic of rejected submissions with reason and raw bytes, kept forever.",
    )
    kafka_topic_outcomes: str = Field(
        default="okr.outcomes",
        description="Kafka topic of the outcome of every submission, for waiting submitters.",
    )
    kafka_partitions: int = Field(
        default=6,
        ge=1,
        description="Partitions of the intake, ledger and outcomes topics when they are created. "
        "Never change it for an existing ledger: an org's partition depends on it.",
    )
    submit_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="On Kafka: how long `submit` and the client wait for a worker's answer "
        "(since the last one) before giving up.",
    )
    sequencer_batch_size: int = Field(
        default=2000, ge=1, description="Intake records the Kafka sequencer decides per batch."
    )
    projector_linger_ms: int = Field(
        default=50,
        ge=0,
        le=10_000,
        description="How long the Kafka worker's projector waits for more ledger records "
        "before it inserts what it has (each insert has a fixed cost).",
    )
    projector_idle_ms: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="The projector inserts sooner once no ledger record has come for this "
        "long (0: off, it waits the whole linger).",
    )
    projector_batch_size: int = Field(
        default=20_000,
        ge=1,
        description="Ledger records the Kafka worker's projector inserts at a time, at most.",
    )
    projector_batch_bytes: int = Field(
        default=8 << 20,
        ge=1024,
        description="Bytes of ledger records the Kafka worker's projector inserts at a time: "
        "it inserts once it holds this much, whatever the count (bounds its memory).",
    )
    sequencer_queue_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Bytes of intake records waiting per partition for the Kafka worker's "
        "sequencer (beside the batch being written); the consumer waits when a partition's "
        "lane is full (bounds what a backlog takes in memory).",
    )
    worker_malloc_trim_seconds: float = Field(
        default=1.0,
        ge=0,
        description="After a projector insert, the worker gives the allocator's free memory "
        "back to the system (glibc malloc_trim), at most this often (0: never).",
    )
    kafka_transactions: bool = Field(
        default=True,
        description="The worker writes each batch in a Kafka transaction, with a transactional "
        "id per ledger partition: a worker that lost a partition cannot write to it any more "
        "(fencing), and on a Kafka that isolates aborted transactions a batch is all or none. "
        "Off: idempotent writes only (see docs/ARCHITECTURE.md).",
    )
    kafka_session_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A worker that sends no heartbeat for this long leaves the group and its "
        "partitions move (a real Kafka refuses less than 6 s by default).",
    )
    kafka_heartbeat_interval_seconds: float = Field(
        default=2.0, gt=0, description="At most a third of the session timeout."
    )
    kafka_rebalance_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long the group's coordinator waits for the workers to rejoin.",
    )
    kafka_max_poll_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A worker whose loop does not poll for this long leaves the group; "
        "longer than the longest batch or restore.",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="How long the broker may hold a fetch with nothing new (the floor of "
        "the worker's latency).",
    )
    kafka_fetch_bytes: int = Field(
        default=4 << 20,
        ge=64 * 1024,
        le=64 << 20,
        description="Bytes of one fetch of a worker, at most: what it holds of a backlog "
        "it has not processed yet.",
    )
    worker_sequencer_process: bool = Field(
        default=True,
        description="`okr-ledger worker` decides and writes in a second process, so that "
        "sequencing and projecting each have a core; off: in threads of one process.",
    )
    worker_state_files: bool = Field(
        default=True,
        description="`okr-ledger worker` keeps each partition's sequencer state in "
        "<data_dir>/sequencer-state/partition-<n>.db, so that gaining a partition reads only "
        "what the ledger holds after the file; off: it folds the whole partition each time.",
    )
    worker_projector_state_files: bool = Field(
        default=True,
        description="`okr-ledger worker` keeps each ledger partition's projector state in "
        "<data_dir>/projector-state/partition-<n>.sqlite, so that gaining a partition replays "
        "only what the ledger holds after the file; off: it replays the whole partition.",
    )
    projector_retry_max_seconds: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="While the projection store is unavailable, the Kafka worker's projector "
        "(down: the sequencer goes on) tries it again after 0.5 s, then twice as long each "
        "time, up to this.",
    )
    projector_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        le=60,
        description="A full batch, a revoke or an assignment of the Kafka worker's projector "
        "waits this long at most for the insert under way, or for an assignment's read of the "
        "store (the consumer, and so the sequencer, waits with it); past that the store is "
        "taken as down, as when an insert fails. At most 60: Faust gives an assignment 90 s. "
        "An insert that is only slow (a large batch on a loaded server) is taken as down "
        "too, and costs a recovery.",
    )
    projector_commit_bytes: int = Field(
        default=16 << 20,
        ge=64 << 10,
        le=1 << 30,
        description="A catch-up or `rebuild` on the embedded runtime commits once it has staged "
        "this many bytes of rows: fewer, larger parts with more; less memory with less.",
    )
    projector_save_every: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="`okr-ledger worker` saves a ledger partition's projector state once it "
        "has projected this many of its records since the last save (and on a revoke): "
        "what a new owner replays, and the check-ins the worker keeps in memory.",
    )
    worker_app_id: str = Field(
        default="okr-ledger",
        description="Faust app id of `okr-ledger worker` (its consumer group and internal topics).",
    )
    worker_web_port: int = Field(
        default=6066,
        ge=1,
        le=65535,
        description="Port where `okr-ledger worker` serves read-only queries on its embedded "
        "store (ClickHouse HTTP interface); the query commands send theirs there.",
    )
    worker_web_host: str = Field(
        default="127.0.0.1", description="Address the worker's query endpoint binds to."
    )
    query_user: str = Field(
        default="reader",
        min_length=1,
        description="User name of the query endpoint's reader credential.",
    )
    query_password: SecretStr | None = Field(
        default=None,
        description="Password of the query endpoint (default: the token in "
        "<data_dir>/query-token, created by `init` or the worker). Required when "
        "OKR_WORKER_WEB_HOST is not a loopback address.",
    )
    store_writer_user: str = Field(
        default="writer",
        min_length=1,
        description="User name of `okr-ledger serve-store`'s writer credential (the workers').",
    )
    store_writer_password: SecretStr | None = Field(
        default=None,
        description="Password of `okr-ledger serve-store`'s writer credential (default: the "
        "token in <data_dir>/store-writer-token, created by serve-store). Required when it "
        "listens on an address that is not a loopback address.",
    )
    query_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest a read-only query (`sql`, the query endpoint) may run.",
    )
    query_max_memory_bytes: int = Field(
        default=2 << 30,
        ge=1 << 20,
        description="Most memory a read-only query (`sql`, the query endpoint) may use.",
    )
    query_max_waiting: int = Field(
        default=32,
        ge=0,
        description="Readers' statements that may wait behind the one running on the query "
        "endpoint (serve-store, the worker's); the next gets HTTP 503, "
        "TOO_MANY_SIMULTANEOUS_QUERIES (202).",
    )
    query_max_connections: int = Field(
        default=128,
        ge=1,
        description="Most open connections of the query endpoint's server (serve-store; the "
        "worker's web port, with its /metrics and health pages); one more is answered HTTP 503 "
        "(TOO_MANY_SIMULTANEOUS_QUERIES) and closed at once.",
    )
    query_receive_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="On the query endpoint's server (serve-store; the worker's web port): a "
        "connection idle, or without a complete request head, this long after it opened or "
        "after its previous answer is closed; a reader's body must arrive within it of its "
        "head, and a writer's may not pause longer (else HTTP 408, SOCKET_TIMEOUT).",
    )
    log_level: str = Field(default="INFO", description="Log level of `okr-ledger worker`.")
    kafka_topic_keys: str = Field(
        default="okr.keys",
        description="Compacted Kafka topic of the HTTP API's keys (hashes only), read by every "
        "`okr-ledger serve` replica.",
    )
    kafka_topic_alerts: str = Field(
        default="okr.alerts",
        description="Kafka topic the worker publishes each new or resolved attention item to.",
    )
    alerts_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the Kafka worker's timer looks for new or resolved attention "
        "items (0: never).",
    )
    alert_webhook_urls: list[HttpUrl] = Field(
        default_factory=list,
        max_length=20,
        description="URLs (http or https) the worker POSTs each published alert to (JSON), "
        "e.g. '[\"https://hooks.example/okr\"]'; redirects are not followed. Best effort: the "
        "okr.alerts topic is the record.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address `okr-ledger serve` binds.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of `okr-ledger serve`.")
    http_workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Server processes `okr-ledger serve` runs on its one socket (uvicorn's "
        "workers), each with its own runtime and group-commit writer; 1: one process.",
    )
    http_max_batch_bytes: int = Field(
        default=8 << 20,
        ge=1024,
        description="Largest NDJSON batch body the HTTP API reads; a larger one is refused (413) "
        "and recorded as a too_large rejection. A single JSON body has OKR_MAX_SUBMISSION_BYTES.",
    )
    http_max_batch_lines: int = Field(
        default=10_000,
        ge=1,
        description="Most submissions (non-blank lines) in one NDJSON batch; a batch with more "
        "is refused whole (413) and recorded as one too_large rejection.",
    )
    http_head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Most seconds a request's line and headers may take to arrive, from their "
        "first byte; a slower one is answered 408 and its connection closed (slowloris).",
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most open connections (or requests being served) in one server process; "
        "a request beyond them is answered 503 at once.",
    )
    http_max_hook_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest webhook payload the HTTP API reads."
    )
    http_rate_limit: str = Field(
        default="1000/second",
        description="Requests each key may make, in the `limits` notation ('100/second; "
        "5000/minute'); empty for none. Counted per replica and worker process.",
    )
    http_hooks_file: Path | None = Field(
        default=None,
        description="TOML file of webhook mappings for POST /v1/hooks/{name} (validated at start).",
    )
    http_group_max: int = Field(
        default=5000,
        ge=1,
        description="Most submissions the HTTP server's writer takes from concurrent requests "
        "at once (group commit); the ledger stores them in transactions of its batch size.",
    )
    chdb_release_load_pages: bool = Field(
        default=True,
        description="With chDB (embedded): on a process's first connection, drop the pages "
        "of chDB's library that loading it made resident, before its engine starts "
        "(`madvise`, Linux): ~65-100 MiB less peak RSS for every command right after an "
        "install, for ~7 ms of CPU and the faults that map back what the engine uses "
        "(~35 ms of CPU in all per command, measured).",
    )
    http_store_idle_seconds: float = Field(
        default=10.0,
        ge=0,
        description="On the embedded runtime: how long `okr-ledger serve` keeps the projection "
        "store open after a read (in its store's process: a read opens it in ~0.15 s, ~1 s if "
        "that process must start; while it is open, no other process can open it). 0: closed "
        "after every read.",
    )
    http_key_refresh_seconds: float = Field(
        default=0.5,
        gt=0,
        description="On Kafka: how often each server replica reads new key records (revocations).",
    )

    verify_processes: int = Field(
        default_factory=default_verify_processes,
        ge=1,
        description="Processes `okr-ledger verify` checks a SQLite ledger with, each org's "
        "chain cut into ranges (default: the CPUs this process may use, at most 4); 1: in one "
        "process.",
    )
    verify_range_events: int = Field(
        default=DEFAULT_RANGE_EVENTS,
        ge=1,
        description="Events per range of a chain that `okr-ledger verify` gives a process; a "
        "SQLite ledger of fewer than ten ranges' events is verified in one.",
    )

    @property
    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def resolved_clickhouse_url(self) -> str:
        # chdb:///path is absolute (clickhouse-connect's reading): resolve a relative data dir.
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').absolute()}"

    @property
    def query_limits(self) -> "QueryLimits":
        from projections.readonly_sql import QueryLimits

        return QueryLimits(self.query_max_seconds, self.query_max_memory_bytes)

    @property
    def topic_names(self) -> dict[str, str]:
        """The four topics of the ledger by role (``intake``, ``ledger``, ``rejections``,
        ``outcomes``): the keywords of ``okr_topics`` and ``Topics``."""
        return {
            "intake": self.kafka_topic_intake,
            "ledger": self.kafka_topic_ledger,
            "rejections": self.kafka_topic_rejections,
            "outcomes": self.kafka_topic_outcomes,
        }

    @property
    def policy(self) -> Policy:
        return Policy(
            clock_skew=timedelta(seconds=self.clock_skew_seconds),
            max_bytes=self.max_submission_bytes,
        )
