"""What the Kafka worker is told: plain values, built from the settings by ``okr_ledger``.

``processors/`` imports nothing of ``okr_ledger``: the application package reads the ``OKR_``
settings and hands the worker these objects (:func:`okr_ledger.worker_config.worker_config`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from events.sequencer import DEFAULT_POLICY, Policy


@dataclass(frozen=True, slots=True)
class GroupTimings:
    """How fast the consumer group notices a dead worker and moves its partitions.

    The defaults suit a real Kafka, whose brokers refuse sessions under 6 s
    (``group.min.session.timeout.ms``). On Tansu the tests and benchmarks use 3 s / 0.5 s / 3 s:
    a SIGKILLed worker's partitions then make progress on a survivor after about 5 s.
    """

    session_timeout_s: float = 10.0
    """A worker that sends no heartbeat for this long is out of the group."""
    heartbeat_interval_s: float = 2.0
    """At most a third of the session timeout."""
    rebalance_timeout_s: float = 10.0
    """How long the coordinator waits for the members to rejoin a rebalance."""
    max_poll_interval_s: float = 300.0
    """A worker that does not poll for this long (a stuck loop) leaves the group. It must
    exceed the longest batch and the longest restore on assignment."""
    request_timeout_s: float = 90.0
    """Bounds every request, and the restore on assignment (Faust awaits it with this)."""
    fetch_max_wait_ms: int = 100
    """How long the broker may hold a fetch that has nothing new (Faust fixes it at 1,500 ms,
    which costs up to 0.75 s of freshness on Tansu)."""


@dataclass(frozen=True, slots=True)
class Topics:
    intake: str = "okr.intake"
    ledger: str = "okr.ledger"
    rejections: str = "okr.rejections"
    outcomes: str = "okr.outcomes"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker process: the Faust app, its group, its agents."""

    servers: tuple[str, ...]
    app_id: str = "okr-ledger"
    """The consumer group, and the prefix of the transactional ids (``<app id>-seq-<p>``)."""
    topics: Topics = field(default_factory=Topics)
    data_dir: Path = Path(".okr-ledger")
    """Where Faust keeps its own files and the worker its state files."""
    sequencer_batch_size: int = 2000
    """Intake records the sequencer decides and writes per transaction, at most."""
    projector_batch_size: int = 20_000
    """Ledger records the projector inserts at a time, at most."""
    projector_batch_bytes: int = 8 << 20
    """Bytes of ledger records (keys and values) the projector inserts at a time: it inserts
    once what it holds reaches this, whatever the count. What a batch holds in memory while
    it is projected (the records decoded, the rows) follows it."""
    sequencer_queue_bytes: int = 1 << 20
    """Bytes of intake records (keys and values) waiting per partition for the sequencer, at
    most (beside the batch being written): the consumer waits when a lane is full."""
    malloc_trim_s: float = 1.0
    """After a projector insert, hand the allocator's free pages back to the kernel, at most
    this often (0: never): :meth:`processors.kafka_projector.ProjectorAgent._apply`."""
    projector_linger_s: float = 0.05
    """How long the projector waits for more records before inserting what it has."""
    projector_idle_s: float = 0.0
    """The projector inserts sooner once nothing has come for this long (0: off)."""
    fetch_bytes: int = 4 << 20
    """Bytes of one fetch, at most (the whole response, and each partition's share of it).
    With a backlog the consumer holds what its fetches brought until the agents take it:
    this bounds that, not the backlog (see :class:`processors.faust_batches.FastFetchThread`)."""
    policy: Policy = DEFAULT_POLICY
    transactions: bool = True
    """Write each batch in a Kafka transaction (fencing; atomic batches on a real Kafka)."""
    state_files: bool = True
    """Keep each partition's sequencer state in a file in ``data_dir`` (restore reads only
    what the ledger holds after it), or in memory (restore folds the whole partition)."""
    projector_state_files: bool = True
    """Keep each ledger partition's projector state in a file in ``data_dir``
    (:class:`processors.kafka_projector.PartitionStates`): gaining a partition replays only
    what the ledger holds after it; or not (the partition is replayed from its beginning)."""
    projector_save_every: int = 100_000
    """Save a partition's projector state once this many of its records were projected since
    the last save (as the embedded runner's ``DEFAULT_SAVE_EVERY``), and on a revoke."""
    projector_retry_max_s: float = 30.0
    """While the projection store is unavailable, the projector tries it again after 0.5 s,
    then twice as long each time, up to this (:class:`processors.kafka_projector.Outage`)."""
    projector_stall_s: float = 60.0
    """A full projector batch, a revoke or an assignment waits this long at most for the
    insert under way; past that the store is taken as down
    (:attr:`processors.kafka_projector.Outage.stall_s`)."""
    sequencer_process: bool = True
    """Decide and write in a process of its own (a core of its own), or in threads of the
    worker's process."""
    timings: GroupTimings = field(default_factory=GroupTimings)
    timeout_s: float = 30.0
    """Kafka requests of the sequencer's readers and writers."""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    log_level: str = "INFO"

    def transactional_id(self, partition: int) -> str:
        """The transactional id of the writer of ledger ``partition``: the next worker to own
        the partition initialises it again, which fences this one."""
        return f"{self.app_id}-seq-{partition}"
