"""The projector agent: the ledger partitions (and rejections lanes) this worker owns -> the store.

Its partitions come from the consumer group (:mod:`processors.faust_app`), the same as the
sequencer's: ledger partition *p* lands on the worker that sequences intake *p*. It applies the
chain rule (:class:`events.kafka_records.ChainReader`: orphans are not part of the ledger) and
feeds the same :meth:`processors.projector.Projector.project_records` as the embedded runner,
the stored records as decoded (no object per event), with the collector paused until their
rows are inserted (:func:`events.collector.collector_paused`: the batch's rows and records are
let go of before it runs again, so it does not scan them). Events at or below an org's
checkpoint in the store are *replayed*: they rebuild the projector's state and their rows are
discarded (they are in the store). Later events are projected in batches
(up to ``batch_size`` records, or what arrived within ``linger_s``) and inserted once per table
per batch, the checkpoints last (:meth:`projections.store.ProjectionStore.insert`).

**On assignment** (:meth:`ProjectorAgent.assign`, inside the consumer's seek barrier) it reads
the store's checkpoints: they are the record of what was projected, whoever projected it. A
partition whose every org the store has exactly where this worker's state has it (it held the
partition and nobody projected it since) is read on from where this worker stopped; any other
partition's state is dropped and restored from the partition's state file
(:class:`PartitionStates`), if usable, and the partition read on from the file's offset;
otherwise it is read from its beginning (the chain rule needs every record). Either way what is
at or below the checkpoints is only replayed. The files are saved after an insert, every
``save_every`` records of a partition, and on a revoke; a save drops the saved check-ins from
memory. See docs/ARCHITECTURE.md, "Projector state files".

A crash anywhere loses nothing: the checkpoints only move after the batch's rows are stored,
and a batch projected again yields the same rows (versioned by ``sequence``), which collapse.
A worker that lost its partitions and still inserts (a paused one, waking) writes rows that
collapse the same way; its discards and its ledger checkpoints are refused, because each
partition is *claimed* on assignment (:data:`processors.tables.OWNER_STREAM`) and those writes
check the claim inside the statement. Each partition of the rejections topic is a lane
(:class:`events.kafka_records.RejectionLanes`, co-partitioned with the ledger when they have
as many partitions), with its own checkpoint; a rejection's position is the event log's (so a
rebuild matches), and a re-insert collapses too.

**A store that does not answer** (an insert, or the take of an assignment, raising
:class:`schemas.errors.ProjectionUnavailableError` or an ``OSError``: :func:`store_failed`;
any other error still ends the worker) does not end the worker when the
agent is given an :class:`Outage` (the worker's is): the projector is *down*. It drops what is
handed over, the sequencer goes on deciding, and it tries the store again with a bounded
exponential backoff: its state files let go of (unsaved), the store opened anew and a new
:class:`LedgerProjection` on it (:attr:`Outage.reopen`), as a restart makes them. Once that
succeeds it asks the consumer group for a rebalance (:attr:`Outage.rejoin`), and takes its
partitions again on the assignment that follows, as any assignment does (the claim, the discard
of a commit cut short, the state files, the seek barrier). So the recovery adds no seek of its
own: what was fetched before it is dropped by the group's generation, the one guard every
rebalance already relies on. A store that answers nothing (paused, cut off) is taken as down
when a full batch's hand-over, a revoke or an assignment has waited :attr:`Outage.stall_s`
(for the insert under way and its own work); the recovery waits for that work to end (the
client's read timeout) before it tries the store again. A take whose assignment gave up on it,
or was revoked, stops before its discard (:class:`Late`)."""

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from events import allocator
from events.collector import collector_paused
from events.kafka_records import ChainReader, RejectionLanes, read_rejection
from events.log import ChainHead
from events.outcomes import Rejection
from processors import tables as t
from processors.faust_batches import Unreadable, records_bytes
from processors.kafka_config import WorkerConfig
from processors.metrics import PrometheusMetrics
from processors.projector import RECORD_FIELDS, Projector, StoredEvent, micros
from processors.rejections import project_rejections
from processors.runner import DEFAULT_SAVE_EVERY, RowSink
from processors.snapshots import (
    PartitionMark,
    PartitionSaved,
    PartitionSnapshots,
    Snapshot,
    partition_state_file,
)
from processors.tables import RowBatch
from schemas.errors import (
    LedgerUnavailableError,
    ProjectionError,
    ProjectionUnavailableError,
    UnusableSnapshotError,
)

if TYPE_CHECKING:
    from events.kafka_client import Connection, Reader

log = logging.getLogger(__name__)

LedgerRecord = tuple[int, int, bytes | None, bytes | None]
"""(partition, offset, key, value) of a ledger record."""
Progress = Callable[[int], Awaitable[tuple[int | None, int | None]]]
"""Ledger partition -> its end as last fetched and the consumer's position in it."""
Rewind = Callable[[int], Awaitable[None]]
"""Seeks the consumer of a ledger partition to the partition's beginning."""
Rejoin = Callable[[], Awaitable[None]]
"""Asks the consumer group for a rebalance: this worker's partitions revoked and assigned
again."""
T = TypeVar("T")
FIRST_RETRY_S = 0.5
"""The first wait of a projector that is down before it tries the store again."""
REBALANCE_WAIT_S = 120.0
"""How long a recovery waits for the assignment of the rebalance it asked for before it asks
again (a rebalance waits for every member to rejoin, each after its revoke)."""
LAG_EVERY_S = 1.0
_FIELDS = frozenset(RECORD_FIELDS)
_REQUIRED = _FIELDS - {"source_event_id", "correlation_id", "causation_id"}
"""The fields of a ledger event, and those it must have: a record with others, or without
one of these, is refused as :class:`~processors.projector.StoredEvent` refuses it."""
RecordAt = Callable[[int, int], bytes | None]
"""(ledger partition, offset) -> the value of the record there (``None``: no record there)."""
LedgerReads = Callable[[], AbstractContextManager[RecordAt]]
"""Opens the reads of the ledger that one assignment's checks make (one :data:`RecordAt` for
all of them), and closes them after."""


def record_digest(value: bytes | None) -> str:
    """What a partition state file keeps of the record before its offset (SHA-256, hex)."""
    return hashlib.sha256(value or b"").hexdigest()


@dataclass(frozen=True, slots=True)
class PartitionStates:
    """Where the projector keeps each ledger partition's state: a file per partition in the
    worker's data directory (:func:`processors.snapshots.partition_state_file`), saved at most
    every ``save_every`` events of the partition and on a revoke. ``ledger`` reads the
    ledger: a file is used only if the ledger's record before its offset is the one it saved."""

    directory: Path
    ledger: LedgerReads
    save_every: int = DEFAULT_SAVE_EVERY

    def file(self, partition: int) -> PartitionSnapshots:
        return PartitionSnapshots(partition_state_file(self.directory, partition))


def partition_states(config: WorkerConfig) -> PartitionStates | None:
    """The worker's :class:`PartitionStates` (``None`` when its settings turn them off)."""
    if not config.projector_state_files:
        return None
    from events.kafka_client import Connection

    connection = Connection(config.servers, "okr-projector-restore", config.timeout_s)
    return PartitionStates(
        config.data_dir,
        ledger_record_at(connection, config.topics.ledger),
        config.projector_save_every,
    )


def ledger_record_at(connection: "Connection", topic: str) -> LedgerReads:
    """:attr:`PartitionStates.ledger` on the ledger topic ``topic`` (committed reads): one
    reader for all the checks of an assignment, made at the first check, closed after."""

    @contextmanager
    def reads() -> Iterator[RecordAt]:
        reader: Reader | None = None

        def record_at(partition: int, offset: int) -> bytes | None:
            nonlocal reader
            if reader is None:
                from events.kafka_client import Reader  # Kafka's client: when a file is checked

                reader = Reader(connection)
            for record in reader.read(topic, {partition: offset}):
                return record.value if record.offset == offset else None
            return None

        try:
            yield record_at
        finally:
            if reader is not None:
                reader.close()

    return reads


@dataclass(slots=True)
class Pending:
    """Records handed over since the last insert."""

    ledger: list[LedgerRecord] = field(default_factory=list)
    """Each partition's in offset order."""
    rejections: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    """(lane, offset, value) of rejections-topic records, each lane's in offset order."""
    waiting: dict[int, int] = field(default_factory=dict)
    """Per ledger partition, how many of :attr:`ledger` are its."""
    size: int = 0
    """Bytes of the records' keys and values."""
    first_at: float = 0.0
    last_at: float = 0.0
    """When the first and the latest records were handed over (``time.monotonic``)."""

    def __len__(self) -> int:
        return len(self.ledger) + len(self.rejections)

    def drop(self, partitions: set[int]) -> None:
        """Forget what was handed over of ledger ``partitions``."""
        dropped = [r for r in self.ledger if r[0] in partitions]
        if dropped:
            self.ledger = [r for r in self.ledger if r[0] not in partitions]
            self.size -= sum(len(key or b"") + len(value or b"") for *_, key, value in dropped)
        for partition in partitions:
            self.waiting.pop(partition, None)


@dataclass(frozen=True, slots=True)
class Outage:
    """How a :class:`ProjectorAgent` outlives a store that fails (see the module docstring)."""

    reopen: Callable[[], "LedgerProjection"]
    """Opens the store again and a new projection on it (blocking: the store's thread)."""
    rejoin: Rejoin
    retry_max_s: float = 30.0
    """The longest wait between two tries (the first is :data:`FIRST_RETRY_S`, then twice
    the one before)."""
    stall_s: float = 60.0
    """How long a full batch, a revoke or an assignment waits for the insert under way before
    the store is taken as down: the consumer waits on them (and the sequencer's batches behind
    it), and a store that is paused or cut off answers nothing until the client's read timeout
    (300 s)."""


def store_failed(error: BaseException) -> bool:
    """Whether ``error`` is the store not answering (the store says so:
    :class:`schemas.errors.ProjectionUnavailableError`), which puts a projector with an
    :class:`Outage` down; anything else (a statement the store refused, a fault of this code or
    of a record, such as the projector's own :class:`schemas.errors.ProjectionError`) ends the
    worker, as a restart is what those need."""
    return isinstance(error, ProjectionUnavailableError | OSError)


@dataclass(slots=True)
class Late:
    """Set when an assignment stopped waiting for its take (past the stall limit, or its
    barrier cancelled) or its partitions were revoked while it waited for the lock or ran
    (:meth:`ProjectorAgent.assign`)."""

    abandoned: bool = False

    def said(self) -> bool:
        """Whether the assignment has stopped waiting (read in the store's thread)."""
        return self.abandoned


class LedgerProjection:
    """The agent's core without transport: records in, rows into the sink (blocking calls)."""

    def __init__(
        self,
        sink: RowSink,
        partition_count: int,
        lanes: RejectionLanes,
        projector: Projector | None = None,
        states: PartitionStates | None = None,
    ) -> None:
        """``partition_count``: of the ledger topic, to tell where each org's records belong;
        ``lanes``: the rejections topic's partitions; ``states``: where each partition's state
        is saved (none: a partition gained is read from its beginning)."""
        self.sink = sink
        self.chain = ChainReader(partition_count)
        self.lanes = lanes
        self.projector = projector or Projector()
        self.checkpoints = sink.positions()
        self.rejections_done = self._lanes_done(sink.positions(t.REJECTION_STREAM))
        self.next_offsets: dict[int, int] = {}
        """Per ledger partition: the offset after the last record applied."""
        self.newest: dict[int, str] = {}
        """Per ledger partition: ``recorded_at`` of the newest event projected."""
        self.projected = self.replayed = 0
        self.oldest: float | None = None
        """``recorded_at`` (Unix seconds) of the oldest event the last apply projected."""
        self.claim = 0
        """This worker's claim on the partitions of its latest assignment
        (:data:`processors.tables.OWNER_STREAM`)."""
        self.states = states
        self.restored = 0
        """Partitions taken from their state file (not read from their beginning)."""
        self.retaken = 0
        """Partitions read again from their beginning: their saved state proved unusable."""
        self._files: dict[int, PartitionSnapshots] = {}
        """The state files this worker holds (locked): of the partitions it owns."""
        self._handles: dict[int, PartitionSnapshots] = {}
        """Each partition's file as opened once: the saved check-ins of its orgs in memory
        are read back through it (it opens the file again after a revoke closed it)."""
        self._marks: dict[int, PartitionMark | None] = {}
        """Per partition: the mark its file had when this worker last read or saved it."""
        self._saved: dict[int, dict[str, int]] = {}
        """Per partition: each org's position in its file."""
        self._unsaved: dict[int, int] = {}
        """Per partition: records applied since its file was last saved."""
        self._last_digest: dict[int, str] = {}
        """Per partition: :func:`record_digest` of the last record applied."""

    def take(self, partitions: set[int]) -> dict[int, int | None]:
        """A new assignment: where to read each ledger partition from (``None``: its
        beginning). See the module docstring."""
        starts = self.take_unless(partitions, lambda: False)
        assert starts is not None
        return starts

    def take_unless(
        self, partitions: set[int], abandoned: Callable[[], bool]
    ) -> dict[int, int | None] | None:
        """:meth:`take`, or ``None`` if ``abandoned()`` says (before the claim, after it, or
        after the read of the checkpoints) that the assignment went on without this take: the
        store stalled it, and the partitions may be another worker's by now, whose rows its
        discard must not remove (review32b). Its claim, if it landed, is harmless: the latest
        claim is another's, or as high as it (ties pass both), and this one writes no more."""
        if abandoned():
            return None
        if partitions:
            self._claim(partitions)
            if abandoned():
                return None
        # One read of the checkpoints for the discard and for what follows: a checkpoint
        # inserted after it (by a worker that had these partitions, finishing a commit late)
        # must not turn events whose rows the discard removed into "stored already".
        found = self.sink.checkpoints()
        if abandoned():
            return None
        self._discard_unfinished(partitions, found, self.claim)
        self.checkpoints = found.get(t.LEDGER_STREAM, {})
        self.rejections_done = self._lanes_done(found.get(t.REJECTION_STREAM, {}))
        for partition in set(self._files) - partitions:
            self._let_go(partition)
        starts: dict[int, int | None] = {}
        reads = nullcontext(None) if self.states is None else self.states.ledger()
        with reads as record_at:  # one reader for every file this take checks
            for partition in partitions:
                if (
                    partition in self.next_offsets
                    and self._unchanged(partition)
                    and self._kept(partition)
                ):
                    starts[partition] = self.next_offsets[partition]
                else:
                    self._forget(partition)
                    starts[partition] = self._restore(partition, record_at)
        return starts

    def _kept(self, partition: int) -> bool:
        """Whether this worker's state of ``partition`` (which the store agrees with) goes on
        with its file: the file is this worker's again (locked) and holds what it last saved
        there (no other worker of this machine saved it since)."""
        if self.states is None:
            return True
        file = self._handle(partition)
        if not file.lock():
            return False
        self._files[partition] = file
        return file.mark() == self._marks.get(partition)

    def _handle(self, partition: int) -> PartitionSnapshots:
        file = self._handles.get(partition)
        if file is None:
            if self.states is None:
                raise RuntimeError("this projector keeps no state files")
            file = self._handles[partition] = self.states.file(partition)
        return file

    def _restore(self, partition: int, record_at: RecordAt | None) -> int | None:
        """The state of ``partition`` from its file, if the file is usable (see
        :meth:`_usable`, which reads the ledger with ``record_at``): the offset to read from.
        Otherwise ``None`` (read the partition from its beginning) and the file is emptied, to
        be saved anew."""
        if self.states is None or record_at is None:
            return None
        file = self._handle(partition)
        if not file.lock():
            log.warning(
                "ledger partition %s: %s is held by another process; replaying the partition "
                "(its state is kept in memory only)",
                partition,
                file.path,
            )
            return None
        self._files[partition] = file
        self._marks[partition], self._saved[partition] = None, {}
        self._unsaved[partition] = 0
        found = file.read()
        if found is None or not self._usable(partition, found, record_at):
            file.remove()
            return None
        mark, state, heads = found.mark, self.projector.state, self.chain.rule.heads
        for org_id, snapshot in found.snapshots.items():
            state.orgs[org_id] = snapshot.state
        heads.update((org_id, ChainHead(*head)) for org_id, head in found.heads.items())
        self.next_offsets[partition] = mark.next_offset
        if mark.newest:
            self.newest[partition] = mark.newest
        self._last_digest[partition] = mark.record_sha256
        self._marks[partition] = mark
        self._saved[partition] = {org_id: head[0] for org_id, head in found.heads.items()}
        self.restored += 1
        log.info(
            "ledger partition %s: state of %d orgs restored from %s, reading on from offset %s",
            partition,
            len(found.heads),
            file.path,
            mark.next_offset,
        )
        return mark.next_offset

    def _usable(self, partition: int, found: PartitionSaved, record_at: RecordAt) -> bool:
        """Whether a state file of ``partition`` may be used: of this partition and topic
        size, every org of it at or below the store's checkpoint (a state ahead of the store
        was saved past a commit that did not land), and of this ledger (the record before its
        offset is the one it saved)."""
        mark, owner, checkpoints = found.mark, self.chain.owner, self.checkpoints
        why = ""
        if (mark.partition, mark.partitions) != (partition, self.chain.partitions):
            why = f"it is of partition {mark.partition} of {mark.partitions}"
        elif mark.next_offset <= 0:
            why = "it reflects no record"
        elif any(owner(org_id) != partition for org_id in found.heads):
            why = "it holds orgs of other partitions"
        elif any(seq > checkpoints.get(o, 0) for o, (seq, _h) in found.heads.items()):
            why = "it is ahead of the store's checkpoints"
        else:
            try:
                value = record_at(partition, mark.next_offset - 1)
            except LedgerUnavailableError as error:
                value, why = None, f"the ledger could not be read ({error})"
            if not why and (value is None or record_digest(value) != mark.record_sha256):
                why = (
                    f"the ledger's record at offset {mark.next_offset - 1} is not the one it saved"
                )
        if why:
            log.warning(
                "ledger partition %s: not using its state file: %s; replaying", partition, why
            )
        return not why

    def _lanes_done(self, positions: dict[str, int]) -> dict[int, int]:
        """Each lane's checkpoint (the last position projected), from the store's."""
        return {int(k): positions.get(k, 0) for k in self.lanes.names()}

    def rejections_next(self, lanes: set[int]) -> dict[int, int]:
        """Where to read each of ``lanes`` from: the offset after its checkpoint."""
        return {q: self.lanes.next_offset(q, self.rejections_done[q]) for q in lanes}

    def _claim(self, partitions: set[int]) -> None:
        """Claim ``partitions`` before reading the checkpoints: one number above every claim
        made on them so far (whatever the consumer group's generation, which starts again
        when a group is recreated), so that an earlier owner's discards and checkpoints are
        refused from now on."""
        earlier = self.sink.positions(t.OWNER_STREAM)
        self.claim = 1 + max(earlier.get(t.owner_key(p), 0) for p in partitions)
        rows = [(t.OWNER_STREAM, t.owner_key(p), self.claim, 0) for p in sorted(partitions)]
        self.sink.insert({t.CHECKPOINTS: rows})

    def _discard_unfinished(
        self, partitions: set[int], found: dict[str, dict[str, int]], claim: int
    ) -> None:
        """Remove the rows of commits cut short of the orgs of ``partitions`` only: another
        worker may be committing its own partitions' orgs into the same store. ``found``: the
        store's checkpoints, every stream."""
        owner = self.chain.owner
        begun = {
            o: end for o, end in found.get(t.BEGUN_STREAM, {}).items() if owner(o) in partitions
        }
        if begun:
            owners = {o: (t.owner_key(owner(o)), claim) for o in begun}
            self.sink.discard_unfinished({**found, t.BEGUN_STREAM: begun}, owners)

    def _unchanged(self, partition: int) -> bool:
        """Whether the store has every org of ``partition`` where this state has it."""
        state, owner = self.projector.state, self.chain.owner
        orgs = {o for o in self.checkpoints if owner(o) == partition}
        orgs |= {o for o in state.orgs if owner(o) == partition}
        return all(self.checkpoints.get(o, 0) == state.position(o) for o in orgs)

    def _forget(self, partition: int) -> None:
        owner = self.chain.owner
        for org_id in [o for o in self.projector.state.orgs if owner(o) == partition]:
            del self.projector.state.orgs[org_id]
        for org_id in [o for o in self.chain.rule.heads if owner(o) == partition]:
            del self.chain.rule.heads[org_id]
        self.next_offsets.pop(partition, None)
        self.newest.pop(partition, None)
        self._last_digest.pop(partition, None)
        self._marks.pop(partition, None)
        self._saved.pop(partition, None)
        self._unsaved.pop(partition, None)

    def release(self, save: bool = True) -> None:
        """Save (if ``save``) the state of each partition this worker holds a file of and let
        the files go (a revoke: the next owner may be a worker of this machine)."""
        for partition in list(self._files):
            self._let_go(partition, save)

    def _let_go(self, partition: int, save: bool = True) -> None:
        if save and self._unsaved.get(partition, 0) > 0:
            self._save(partition)
        self._files.pop(partition).close()

    def _save(self, partition: int) -> None:
        """Save the state of ``partition`` in its file: the orgs whose position moved since
        the last save, their heads, and the mark. Called only once the store has every event
        applied (after a commit, or at a revoke)."""
        file = self._files.get(partition)
        next_offset = self.next_offsets.get(partition)
        digest = self._last_digest.get(partition)
        if file is None or next_offset is None or digest is None:
            return
        owner, orgs = self.chain.owner, self.projector.state.orgs
        saved = self._saved.setdefault(partition, {})
        snapshots: list[Snapshot] = []
        for org_id, head in self.chain.rule.heads.items():
            if saved.get(org_id) == head.sequence or owner(org_id) != partition:
                continue
            state = orgs.get(org_id)
            if state is None or state.last_sequence != head.sequence:  # never expected
                log.warning(
                    "ledger partition %s: the projector's state of %r is not at its chain "
                    "head; not saving the partition's state",
                    partition,
                    org_id,
                )
                return
            snapshots.append(Snapshot(org_id, head.sequence, head.hash, state))
        mark = PartitionMark(
            partition, self.chain.partitions, next_offset, digest, self.newest.get(partition, "")
        )
        if file.save_partition(snapshots, mark):
            saved.update((s.org_id, s.position) for s in snapshots)
            self._marks[partition] = mark
            self._unsaved[partition] = 0

    def apply(
        self, ledger: list[LedgerRecord], rejections: list[tuple[int, int, bytes | None]]
    ) -> set[int]:
        """Project ``ledger`` records (each partition's in offset order) and ``(lane, offset,
        value)`` rejections; store the rows in one insert per table. Returns the partitions
        to read again from their beginning: those whose saved state proved unusable while
        their records were projected (see :meth:`_retake`); the others' rows are stored."""
        with collector_paused():  # until the batch's rows are inserted and let go of
            return self._apply(ledger, rejections)

    def _project(self, partition: int, replay: list[Any], live: list[Any]) -> RowBatch | None:
        """Project one partition's records of a batch: its rows, or ``None`` when a saved
        check-in it read back was unusable (the partition is then to be taken again)."""
        try:
            if replay:
                self.projector.project_records(replay)  # state only: those rows are stored
            return self.projector.project_records(live) if live else t.empty_batch()
        except UnusableSnapshotError as error:  # saved check-ins are read back lazily
            log.warning(
                "ledger partition %s: its saved projector state is unusable (%s); reading the "
                "partition again from its beginning",
                partition,
                error,
            )
            # The failed call's changes are of that partition's orgs, dropped by the retake
            # (each call before it emitted its own: `current` is true).
            self.projector.drop_changes()
            return None

    def _retake(self, partition: int) -> None:
        """``partition`` again as a take without a usable file takes it: its file removed
        (still this worker's: saved anew later), its state dropped and its orgs' checkpoints
        read again (this worker stored more since the take), so that a read from its
        beginning replays what the store has. The other partitions go on."""
        file = self._files.get(partition)
        if file is not None:
            file.remove()
        self._forget(partition)
        owner, stored = self.chain.owner, self.sink.positions()
        self.checkpoints.update((o, s) for o, s in stored.items() if owner(o) == partition)
        self.retaken += 1

    def _apply(
        self, ledger: list[LedgerRecord], rejections: list[tuple[int, int, bytes | None]]
    ) -> set[int]:
        replay: dict[int, list[dict[str, Any]]] = {}
        live: dict[int, list[dict[str, Any]]] = {}
        admit, checkpoints = self.chain.admit, self.checkpoints
        next_offsets, newest = self.next_offsets, self.newest
        firsts: dict[int, str] = {}  # each partition's first live event's recorded_at
        counts: dict[int, int] = {}  # records per partition
        lasts: dict[int, bytes | None] = {}  # each partition's last record's value
        self.oldest = None
        for partition, offset, key, value in ledger:
            next_offsets[partition] = offset + 1
            counts[partition] = counts.get(partition, 0) + 1
            lasts[partition] = value
            record = admit(partition, key, value)
            if record is None:
                continue  # an orphan (chain rule)
            fields = record.keys()
            if not (fields >= _REQUIRED and fields <= _FIELDS):
                StoredEvent.from_record(record)  # raises the TypeError that names the field
                raise TypeError(f"a ledger event with fields {sorted(fields)}")
            if record["sequence"] <= checkpoints.get(record["org_id"], 0):
                replay.setdefault(partition, []).append(record)
            else:
                live.setdefault(partition, []).append(record)
                firsts.setdefault(partition, record["recorded_at"])
            newest[partition] = record["recorded_at"]
        rows, unusable = t.empty_batch(), set()
        for partition in counts:  # each on its own: an unusable state fails that one only
            replayed, projected = replay.get(partition, []), live.get(partition, [])
            found = self._project(partition, replayed, projected)
            if found is None:
                unusable.add(partition)
                continue
            t.merge(rows, found)
            self.replayed += len(replayed)
            self.projected += len(projected)
        t.merge(rows, self._rejection_rows(rejections))
        if any(rows.values()):
            owner, claim = self.chain.owner, self.claim
            owners = {
                row[1]: (t.owner_key(owner(row[1])), claim)
                for row in rows.get(t.CHECKPOINTS, ())
                if row[0] == t.LEDGER_STREAM
            }
            self.sink.insert(rows, owners)  # the checkpoints last, if still ours
        for partition in unusable:
            self._retake(partition)
            firsts.pop(partition, None)
            del counts[partition], lasts[partition]
        if firsts:
            self.oldest = min(micros(at) for at in firsts.values()) / 1e6
        for partition, value in lasts.items():
            self._last_digest[partition] = record_digest(value)
        if self.states is not None:
            self._save_due(counts, self.states.save_every)
        return unusable

    def _save_due(self, counts: dict[int, int], every: int) -> None:
        """After a batch stored: save each partition that has ``every`` records unsaved."""
        unsaved = self._unsaved
        for partition, count in counts.items():
            if partition in self._files:
                unsaved[partition] = unsaved.get(partition, 0) + count
                if unsaved[partition] >= every:
                    self._save(partition)

    def _rejection_rows(self, rejections: list[tuple[int, int, bytes | None]]) -> RowBatch:
        by_lane: dict[int, list[tuple[int, Rejection]]] = {}
        behind: dict[int, list[int]] = {}
        for lane, offset, value in rejections:
            position = self.lanes.position(lane, offset)
            if position > self.rejections_done[lane]:
                by_lane.setdefault(lane, []).append((position, read_rejection(value)))
            else:
                behind.setdefault(lane, []).append(offset)
        for lane, offsets in behind.items():
            # Never expected: each lane is read from the offset after its checkpoint, in
            # order. Records delivered out of order would be lost here: say so loudly.
            log.warning(
                "rejections lane %s: %d records at or below its checkpoint handed over "
                "(offsets %s-%s), not projected again",
                lane,
                len(offsets),
                offsets[0],
                offsets[-1],
            )
        rows: RowBatch = {}
        for lane, pending in by_lane.items():
            self.rejections_done[lane] = pending[-1][0]
            t.merge(rows, project_rejections(pending, lane=str(lane)))
        return rows


class ProjectorAgent:
    """Runs :class:`LedgerProjection` on the batches the consumer group hands over."""

    def __init__(
        self,
        projection: LedgerProjection,
        store_thread: ThreadPoolExecutor,
        metrics: PrometheusMetrics,
        progress: Progress,
        *,
        batch_size: int = 20_000,
        batch_bytes: int = 8 << 20,
        linger_s: float = 0.05,
        idle_s: float = 0.0,
        trim_s: float = 1.0,
        crash: Callable[[BaseException], Awaitable[None]] | None = None,
        rewind: Rewind | None = None,
        outage: Outage | None = None,
    ) -> None:
        """``store_thread``: the one thread that uses the projection's sink (a blocking
        client). ``crash``: ends the worker when an insert failed and there is no ``outage``,
        or for a failure other than the store's (it must not go on without those rows).
        ``rewind``: reads a partition again from its beginning (its saved state proved
        unusable); without it, that stops the worker. ``outage``: the store failing puts the
        projector down and it recovers (module docstring)."""
        self.projection = projection
        self._rewind = rewind
        self._outage = outage
        self._recovery: asyncio.Task[None] | None = None
        self._reopened = False
        """Down, whether :attr:`projection` is the recovery's (on the store opened anew)."""
        self._retry_s = FIRST_RETRY_S
        """The recovery's next wait: doubled after each try, back to :data:`FIRST_RETRY_S`
        only once an insert has succeeded (a store that fails right after each recovery is
        tried less and less often)."""
        self._assigned = asyncio.Event()
        """Set by each assignment: what a recovery that asked for a rebalance waits for."""
        self._late = Late()
        """The latest assignment's take: abandoned by a revoke too."""
        self._lag_at: tuple[dict[int, int], dict[int, str]] = ({}, {})
        """Down: where the projection stood when it went down (offsets, newest events), for
        the lag (the projection opened anew knows nothing yet)."""
        self._stale: dict[int, int] = {}
        """Per ledger partition read again from its beginning: the first offset of the batch
        that failed. Its hand-overs from there on came before the seek: dropped."""
        self._thread = store_thread
        self._crash = crash
        self._crashed = False
        self._failure: Exception | None = None
        """A failed insert that ends the worker: the projection's state and offsets had
        already moved past its rows, so nothing may be inserted or settled after it."""
        self._down = False
        """The store failed: nothing is inserted or settled until a recovery's take."""
        self.metrics = metrics
        self._progress = progress
        self.batch_size, self.linger_s, self.idle_s = batch_size, linger_s, idle_s
        self.batch_bytes, self.trim_s = batch_bytes, trim_s
        self._trimmed = time.monotonic()
        self._pending = Pending()
        self._lock = asyncio.Lock()
        """Held by whatever uses the projection: an insert, a take, a release, a recovery."""
        self._wake = asyncio.Event()
        self._owned: set[int] = set()
        self._lanes: set[int] = set()
        self._generation: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def _blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    @property
    def down(self) -> bool:
        """Whether the projector is down: the store failed, and it is retrying (only with an
        :class:`Outage`; without one, the worker ends)."""
        return self._down

    @property
    def _saves(self) -> bool:
        """Whether the state may be saved: no insert failed since the take."""
        return self._failure is None and not self._down

    def _deadline(self) -> float:
        """When a caller that starts waiting now stops (with an :class:`Outage`): one
        :attr:`Outage.stall_s` for the lock and the work together, as Faust gives an
        assignment's barrier 90 s in all."""
        return time.monotonic() + (self._outage.stall_s if self._outage else 0.0)

    async def _acquire(self, what: str, deadline: float) -> bool:
        """The lock, once the insert under way has ended; with an :class:`Outage`, waiting at
        most until ``deadline``: past that the store is taken as down, and ``False``."""
        if self._outage is None:
            await self._lock.acquire()
            return True
        try:
            await asyncio.wait_for(self._lock.acquire(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self._went_down(TimeoutError(f"{what} waited {self._outage.stall_s:g}s for an insert"))
            return False
        return True

    async def assign(
        self, partitions: set[int], lanes: set[int], generation: int
    ) -> tuple[dict[int, int | None], dict[int, int]]:
        """A new assignment: where to read each ledger partition from (``None``: its
        beginning) and each rejections lane. Down, the take runs on the store opened anew
        (here, if the recovery has not yet) and a take that succeeds ends the outage. If it
        fails, or the wait for the lock and the take together pass :attr:`Outage.stall_s`,
        nothing: the partitions are read from where they stand, and dropped, until the
        recovery's rebalance takes them. A take this call stops waiting for (past the limit,
        or cancelled: Faust cancels a barrier when the next assignment comes) is abandoned
        (:class:`Late`), as is one under way when a revoke comes."""
        self._owned, self._lanes = partitions, lanes
        self.metrics.projecting(partitions)
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._flush_when_due(), name="okr-projector"),
                asyncio.create_task(self._report_lag(), name="okr-projector-lag"),
            ]
        self._assigned.set()
        late = self._late = Late()  # a revoke while this waits for the lock abandons it too
        deadline = self._deadline()
        if not await self._acquire("an assignment", deadline):
            return {}, {}
        ended, starts = False, None
        try:
            ended, starts = await self._bounded(
                self._take(partitions, generation, late), "a take", deadline
            )
        finally:
            if not ended:
                late.abandoned = True
        if starts is None:
            return {}, {}
        log.info(
            "projecting ledger partitions %s and rejections lanes %s",
            sorted(partitions),
            sorted(lanes),
        )
        return starts, self.projection.rejections_next(lanes)

    async def _take(
        self, partitions: set[int], generation: int, late: "Late"
    ) -> dict[int, int | None] | None:
        """Under the lock: the assignment's take (down: on the store opened anew); ``None``
        when the store failed, or when the assignment gave up waiting (``late``)."""
        self._pending = Pending()
        self._stale.clear()
        try:
            if self.down and not self._reopened:
                await self._reopen()
            starts: dict[int, int | None] | None = await self._blocking(
                self.projection.take_unless, partitions, late.said
            )
        except Exception as error:
            if self._outage is None or not store_failed(error):
                raise
            self._went_down(error)
            return None
        if starts is None or late.abandoned:  # the assignment went on: a rebalance takes again
            return None
        self._generation = generation
        if self.down:
            self._up()
        return starts

    async def revoke(self) -> None:
        """Take no more batches until the next assignment (which says where to read from),
        and return once an insert under way has ended and the partitions' states are saved
        and their files let go of: the next owner of these partitions reads the store's
        checkpoints (and may read the files) when it takes them, and this worker rejoins the
        group (letting the assignment go on) only after this returns. Waiting for the lock
        and the release together past :attr:`Outage.stall_s` (an insert that stalls, or the
        store's thread busy with a timer's read of a store that answers nothing) puts the
        projector down instead (its files are let go of by the recovery; the next owner
        replays what it cannot lock)."""
        self._late.abandoned = True  # a take under way: these partitions may move on
        self._generation = None
        self._owned, self._lanes = set(), set()
        self._pending = Pending()
        deadline = self._deadline()
        if await self._acquire("a revoke", deadline):
            await self._bounded(self._release(), "a revoke's save", deadline)

    async def _release(self) -> None:
        """Under the lock: save the partitions' states and let their files go."""
        if self.projection.states is not None:  # after a failed insert: nothing to save
            await self._blocking(self.projection.release, self._saves)

    async def handle(
        self, partition: int, records: list[Any], generation: int, rejections: bool = False
    ) -> None:
        """Records of ledger ``partition`` (or of that rejections lane) as fetched, in offset
        order."""
        if generation != self._generation or self.down:
            return  # down: taken again, as on any assignment, by the recovery's rebalance
        pending = self._pending
        pending.last_at = time.monotonic()
        if not pending:
            pending.first_at = pending.last_at
        if rejections:
            if partition in self._lanes:
                pending.rejections.extend(
                    (partition, r.offset, None if isinstance(r, Unreadable) else r.value)
                    for r in records
                )
                pending.size += records_bytes(records)
        elif partition in self._owned:
            stale = self._stale.get(partition)
            if stale is not None:
                if not records or records[0].offset >= stale:
                    return  # fetched before the seek back to the partition's beginning
                del self._stale[partition]
            pending.ledger += [
                (partition, r.offset, None, None)  # unreadable: an orphan
                if isinstance(r, Unreadable)
                else (partition, r.offset, r.key, r.value)
                for r in records
            ]
            pending.waiting[partition] = pending.waiting.get(partition, 0) + len(records)
            pending.size += records_bytes(records)
        if records and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s partition %s: offsets %s-%s handed over",
                "rejections" if rejections else "ledger",
                partition,
                records[0].offset,
                records[-1].offset,
            )
        if len(pending) >= self.batch_size or pending.size >= self.batch_bytes:
            await self._flush(bounded=True)  # the consumer waits on this hand-over
        else:
            self._wake.set()

    async def settle(self) -> tuple[dict[int, int], dict[int, int]]:
        """Insert what is pending; the next offset of each owned ledger partition it has read,
        and of each owned rejections lane (down: none, the recovery's take says where)."""
        if self.down:  # nothing to insert: no wait for the lock the recovery may hold
            return {}, {}
        await self._flush(bounded=True)
        if self.down:
            return {}, {}
        offsets = {p: o for p, o in self.projection.next_offsets.items() if p in self._owned}
        return offsets, self.projection.rejections_next(self._lanes)

    async def _flush_when_due(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while (wait := self._due() - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                await self._flush()
        except Exception as error:  # the worker must not go on without those rows
            await self._failed(error)
            raise

    def _due(self) -> float:
        """When what is pending is to be inserted: ``linger_s`` after its first record, or
        sooner, ``idle_s`` after its latest (when set), so that a batch that stopped growing
        does not wait out the linger."""
        pending = self._pending
        if not pending:
            return 0.0
        due = pending.first_at + self.linger_s
        if self.idle_s > 0:
            due = min(due, pending.last_at + self.idle_s)
        return due

    async def _failed(self, error: BaseException) -> None:
        """End the worker, once (the agent's own path ends it too, through its caller)."""
        if self._crashed:
            return
        self._crashed = True
        log.error("the projector failed (%s: %s); stopping the worker", type(error).__name__, error)
        if self._crash is not None:
            await self._crash(error)

    async def _flush(self, bounded: bool = False) -> None:
        """Insert what is pending, once the insert under way has ended. ``bounded`` (with an
        :class:`Outage`): the caller waits at most :attr:`Outage.stall_s` for both; past that
        the store is taken as down, and the insert goes on in the background."""
        if not bounded or self._outage is None:
            async with self._lock:
                await self._insert_pending()
            return
        deadline = self._deadline()
        if await self._acquire("a full batch", deadline):
            await self._bounded(self._insert_pending(), "an insert", deadline)

    async def _bounded(
        self, work: Coroutine[Any, Any, T], what: str, deadline: float
    ) -> tuple[bool, T | None]:
        """Run ``work`` under the lock the caller holds (released when it ends) and wait for
        it, with an :class:`Outage` until ``deadline`` at most: past that the store is taken
        as down and ``work`` goes on in the background. Whether it ended, and what it
        returned."""

        async def run() -> T:
            try:
                return await work
            finally:
                self._lock.release()

        task = asyncio.create_task(run(), name=f"okr-projector: {what}")
        if self._outage is None:
            return True, await task
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:  # the caller stopped waiting; the work goes on
            task.add_done_callback(self._ended_late)
            raise
        if done:
            return True, task.result()
        task.add_done_callback(self._ended_late)
        self._went_down(TimeoutError(f"{what} has not ended in {self._outage.stall_s:g}s"))
        return False, None

    def _ended_late(self, work: "asyncio.Task[Any]") -> None:
        """Work that outlasted the stall limit has ended (the projector went down)."""
        if work.cancelled():
            return
        error = work.exception()
        if error is None:
            log.warning("%s, no longer waited for, has ended", work.get_name())
        elif not store_failed(error):
            self._tasks.append(asyncio.create_task(self._failed(error), name="okr-failed"))
        else:
            log.warning("%s, no longer waited for, failed in the end (%s)", work.get_name(), error)

    async def _insert_pending(self) -> None:
        """Under the lock: insert what is pending (down: drop it)."""
        if self.down:
            self._pending = Pending()
            return
        if self._failure is not None:
            raise ProjectionError(
                f"an earlier insert failed ({self._failure}): nothing more is projected"
            ) from self._failure
        pending, self._pending = self._pending, Pending()
        if not pending:
            return
        started = time.monotonic()
        try:
            unusable: set[int] = await self._blocking(self._apply, pending)
            if unusable and not self.down:  # down (it stalled): the next take reads again
                await self._read_again(unusable, pending)
        except Exception as error:
            if self._outage is None or not store_failed(error):
                self._failure = error  # no further batch: its state is changed in part
                raise
            self._went_down(error)
            return
        self._retry_s = FIRST_RETRY_S  # the store took a batch
        self.metrics.projected(
            events=sum(1 for record in pending.ledger if record[0] not in unusable),
            rejections=len(pending.rejections),
            seconds=time.monotonic() - started,
        )
        if self.projection.oldest is not None:
            self.metrics.fresh("projected", self.projection.oldest)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "projected %s records in %.1f ms, %.1f ms after the first (ledger %s)",
                len(pending),
                (time.monotonic() - started) * 1000,
                (started - pending.first_at) * 1000,
                _ranges(pending),
            )

    def _went_down(self, error: Exception) -> None:
        """The store failed (an insert, a take, or it stalled): no further batch, since the
        projection's state is changed in part; recover in the background (module
        docstring)."""
        assert self._outage is not None
        why = f"{type(error).__name__}: {error}"
        self.metrics.projector_down(why[:300])
        self._pending = Pending()
        self._reopened = False
        if self.down:
            log.warning("the projection store failed again while the projector is down (%s)", why)
        else:
            self._down = True
            self._lag_at = (dict(self.projection.next_offsets), dict(self.projection.newest))
            log.error(
                "the projector cannot write the store (%s); it stops projecting, the sequencer "
                "goes on; trying the store again in %.1fs",
                why,
                min(self._retry_s, self._outage.retry_max_s),
            )
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="okr-projector-recovery")

    def _up(self) -> None:
        """An assignment's take succeeded on the store opened anew: projecting again."""
        self._down = self._reopened = False
        self.metrics.projector_up()
        log.info("the projection store is back: projecting again")

    async def _recover(self) -> None:
        """While down: wait (:data:`FIRST_RETRY_S`, then twice as long each time, up to
        :attr:`Outage.retry_max_s`; see :attr:`_retry_s`); once no insert is under way, open
        the store again (:meth:`_reopen`) and ask the group for a rebalance, whose assignment
        takes the partitions and ends the outage; wait for that assignment (at most
        :data:`REBALANCE_WAIT_S`) before asking again. Owning nothing (revoked, and given
        nothing: Faust makes no assignment of nothing), the store opened is enough: checked
        on each round, and as soon as a rebalance gives nothing (:meth:`given_nothing`)."""
        assert self._outage is not None
        while self.down:
            delay = min(self._retry_s, self._outage.retry_max_s)
            self._retry_s = min(delay * 2, self._outage.retry_max_s)
            await asyncio.sleep(delay)
            if not self.down or self._lock.locked():  # an insert that stalled, or a take
                continue
            if not self._reopened and not await self._try_reopen():
                continue
            if self._crashed or not self.down:
                return
            if self._owns_nothing():
                self._up()  # nothing to take: the next assignment takes as any does
                return
            await self._rebalance()
            if self.down and self._reopened and self._owns_nothing():
                self._up()
                return

    async def _try_reopen(self) -> bool:
        """Under the lock: :meth:`_reopen`; whether it succeeded. A store still down is
        counted and logged; any other failure ends the worker (:meth:`_failed`)."""
        assert self._outage is not None
        async with self._lock:
            if not self.down:
                return True
            try:
                await self._reopen()
            except Exception as error:
                if not store_failed(error):
                    await self._failed(error)
                    return True  # the worker ends: the recovery with it
                why = f"{type(error).__name__}: {error}"
                self.metrics.projector_down(why[:300])
                log.warning(
                    "the projection store is still unavailable (%s); trying again in %.1fs",
                    why,
                    min(self._retry_s, self._outage.retry_max_s),
                )
                return False
        return True

    def _owns_nothing(self) -> bool:
        """Whether this worker holds no partition (revoked, and not given any since)."""
        return self._generation is None and not self._owned and not self._lanes

    def given_nothing(self) -> None:
        """A rebalance gave this worker no partition (Faust runs no barrier then, so no
        :meth:`assign`): a recovery waiting for its assignment stops waiting."""
        self._owned, self._lanes, self._generation = set(), set(), None
        self._assigned.set()

    async def _rebalance(self) -> None:
        """Ask the group for a rebalance, and wait for the assignment that follows (or give
        up waiting: the recovery asks again)."""
        assert self._outage is not None
        log.info("the projection store answers: asking the group for a rebalance")
        self._assigned.clear()
        try:
            await self._outage.rejoin()
        except Exception as error:  # the consumer not there (yet): ask again later
            log.warning("asking the group for a rebalance failed (%s)", error)
            return
        try:
            await asyncio.wait_for(self._assigned.wait(), REBALANCE_WAIT_S)
        except TimeoutError:
            log.warning("no assignment %.0fs after asking for a rebalance", REBALANCE_WAIT_S)

    async def _reopen(self) -> None:
        """Under the lock: the old projection's files let go of (unsaved: its state is past
        what the store holds), the store opened anew and a new projection on it."""
        assert self._outage is not None
        old = self.projection
        if old.states is not None:
            await self._blocking(old.release, False)
        self.projection = await self._blocking(self._outage.reopen)
        self._stale.clear()
        self._reopened = True

    async def _read_again(self, partitions: set[int], failed: Pending) -> None:
        """Read ``partitions`` again from their beginning (the projection dropped their
        state: :meth:`LedgerProjection._retake`): what was handed over of them since the
        failed batch is dropped, and so is what comes before the seek takes effect."""
        if self._rewind is None:
            raise ProjectionError(
                f"ledger partitions {sorted(partitions)}: a saved projector state is unusable "
                "and this agent cannot read them again"
            )
        for partition in partitions:
            # Read again, the partition's first records come at or before the failed batch's
            # first (the ledger is never trimmed); those fetched before the seek come after it.
            self._stale[partition] = 1 + min(o for p, o, *_ in failed.ledger if p == partition)
        self._pending.drop(partitions)
        for partition in sorted(partitions):
            await self._rewind(partition)

    def _apply(self, pending: Pending) -> set[int]:
        """Project and insert ``pending`` (in the store's thread); then, at most every
        ``trim_s``, hand what the allocator keeps free back to the kernel
        (:func:`events.allocator.trim`): the consumer thread decodes the records and this
        thread frees them, so glibc keeps their pages in the consumer thread's arena, and a
        backlog's peak stays in the worker's RSS (88 MiB free beside 42 MiB in use after
        300,000 check-ins, before this)."""
        unusable = self.projection.apply(pending.ledger, pending.rejections)
        now = time.monotonic()
        if self.trim_s > 0 and now - self._trimmed >= self.trim_s:
            self._trimmed = now
            allocator.trim()
        return unusable

    async def _report_lag(self) -> None:
        """Every second: per owned partition, the records fetched past (the consumer's end
        minus its position, plus what waits to be inserted) and the newest event's age."""
        while True:
            await asyncio.sleep(LAG_EVERY_S)
            waiting = self._pending.waiting
            projection = self.projection
            offsets, newest_of = (
                self._lag_at if self.down else (projection.next_offsets, projection.newest)
            )
            for partition in sorted(self._owned):
                end, position = await self._progress(partition)
                if end is None or position is None:
                    continue
                newest = newest_of.get(partition)
                age = time.time() - micros(newest) / 1e6 if newest else 0.0
                if self.down:  # the consumer reads on, and what it hands over is dropped
                    if partition not in offsets:
                        continue  # never projected here: where it stands is not known
                    position = offsets[partition]
                behind = max(0, end - position) + waiting.get(partition, 0)
                self.metrics.projector_lag(partition, events=behind, seconds=age)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._recovery is not None:
            self._recovery.cancel()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """The worker stops (no revoke comes then): once an insert under way has ended, save
        the partitions' states and let their files go; at most ``timeout_s`` for both (the
        store's thread may be held by a store that answers nothing)."""
        self.close()
        self._generation = None
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout_s)
        except TimeoutError:
            log.warning("an insert did not end within %.0fs: the states are not saved", timeout_s)
            return
        try:
            await asyncio.wait_for(self._release(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("the states were not saved within %.0fs", timeout_s)
        finally:
            self._lock.release()


def _ranges(pending: Pending) -> str:
    """``partition:first-last`` of each ledger partition in ``pending`` (for the debug log)."""
    ranges: dict[int, tuple[int, int]] = {}
    for partition, offset, *_ in pending.ledger:
        first, _last = ranges.get(partition, (offset, offset))
        ranges[partition] = (first, offset)
    return " ".join(f"{p}:{first}-{last}" for p, (first, last) in sorted(ranges.items()))
