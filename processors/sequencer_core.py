"""The sequencer's blocking work for the intake partitions a worker owns: restore, then batches.

:class:`SequencerCore` holds, per owned partition, the sequencer's state and the partition's
fenced writer. The sequencer agent (:mod:`processors.kafka_worker`) calls it through a
:class:`CoreRunner`: in threads of the worker's process (:class:`ThreadRunner`), or in a
process of its own (:class:`ProcessRunner`), so that deciding (CPU in Python) and projecting
(the worker's main process) each have a core.

**Restore** (:meth:`SequencerCore.fence`, then :meth:`SequencerCore.restore`): create the
partition's writer with the transactional id ``<app id>-seq-<p>``, which fences every earlier
writer of the partition, and only then fold what the ledger partition (chain rule) and its
rejections lane (:class:`events.kafka_records.RejectionLanes`) hold beyond the state this
process kept (when it held the partition before and every write of it was whole) or all of it;
find where to resume.

**Batches** (:meth:`SequencerCore.sequence`): decide, then write rejections, events and
outcomes in one transaction through the partition's writer
(:class:`events.kafka_log.LedgerWriter`). A write refused because another worker owns the
partition now is :attr:`Verdict.FENCED`; any other failure of a write (the state may be ahead
of the ledger) is :attr:`Verdict.RESTORE`: restore from nothing.

**One batch decides at a time.** Deciding a batch (Python, under the GIL) holds a lock, let
go of once the batch is decided: the batches of several partitions, fetched together, are
decided one after the other (the first is written and kept while the second is decided)
instead of all at once, each slowed by all the others, and all of them reaching Kafka at the
end. While a batch decides, the cyclic garbage collector is paused
(:func:`events.collector.collector_paused`, as the embedded ledger does around its batches):
deciding allocates many objects that live on, and each burst of them set off collections
that scanned everything alive. It runs again between two batches' decisions.

**Transactions, one at a time.** Calls of different partitions run at the same time (one per
partition), so that one partition's batch is decided (Python, CPU) while another's transaction
waits on Kafka. But a process has at most one transaction (or fence) under way: the writes
take one lock. Tansu can leave a transaction open for good when the process that had it open
is killed while another of its transactions is in flight (docs/ARCHITECTURE.md, "What ends a
dead worker's open transaction"), and every restore then waits on it; with one at a time, a
killed worker leaves at most one open transaction, as before.
"""

import asyncio
import ctypes
import gc
import itertools
import logging
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing import get_context
from multiprocessing.connection import Connection as PipeEnd
from multiprocessing.context import ForkProcess, SpawnProcess
from typing import Any, Protocol

from events import allocator
from events.collector import collector_paused
from events.kafka_client import Connection, OutRecord, Reader
from events.kafka_log import KafkaEventLog, LedgerWriter
from events.kafka_records import decode_event
from processors.kafka_config import WorkerConfig
from processors.kafka_sequencer import (
    BatchOutput,
    IntakeRecord,
    PartitionSequencer,
    StoredRecord,
)
from processors.sequencer_state import (
    FileState,
    StateFileError,
    open_state,
    remove_state_file,
    state_file,
)
from schemas.envelope import utc_now
from schemas.errors import LedgerUnavailableError, SequenceConflictError, WriterFencedError

log = logging.getLogger(__name__)


class Verdict(Enum):
    WRITTEN = "written"
    RESTORE = "restore"
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class Restored:
    resume: int
    """The first intake offset to read."""
    seconds: float
    folded: int
    """Ledger records read."""


@dataclass(frozen=True, slots=True)
class Sequenced:
    verdict: Verdict
    resume: int | None
    """The first intake offset not decided yet."""
    events: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    """Rejections written, by reason code."""
    duplicates: int = 0
    outcomes: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class Owned:
    """An intake partition this worker owns: its sequencer and its fenced writer."""

    sequencer: PartitionSequencer
    writer: LedgerWriter
    rejections_next: int
    """Every record of the partition's rejections lane before this offset is folded."""
    intact: bool = True
    """False once a write failed or was cut short: the state may be ahead of the ledger."""


class _HalfAppliedError(Exception):
    """The state took an accepted event half: leave the batch's state transaction without
    keeping it (the batch itself is written)."""


class SequencerCore:
    """See the module docstring. Its methods block; one call per partition at a time."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        t = config.topics
        self.log = KafkaEventLog(
            config.servers,
            ledger_topic=t.ledger,
            rejections_topic=t.rejections,
            client_id="okr-sequencer",
            timeout_s=config.timeout_s,
            read_only=True,
        )
        self._owned: dict[int, Owned] = {}
        self._fenced: dict[int, LedgerWriter] = {}
        """Writers made by :meth:`fence`, not restored yet."""
        self._transacting = threading.Lock()
        """Held by the one transaction (or fence) under way in this process: see
        "Transactions, one at a time" in the module docstring."""
        self._deciding = threading.Lock()
        """Held by the batch being decided: see "One batch decides at a time" in the module
        docstring."""

    def fence(self, partitions: list[int]) -> None:
        """Make the writers of ``partitions``: every earlier writer of each is refused from
        now on, and its open transaction is aborted. Every partition of an assignment is
        fenced before any is restored (they take one lock here: see "Transactions, one at a
        time")."""
        c = self.config

        def writer(partition: int) -> LedgerWriter:
            transactional_id = c.transactional_id(partition) if c.transactions else None
            return self.log.partition_writer(partition, transactional_id)

        with self._transacting, ThreadPoolExecutor(max(1, min(8, len(partitions)))) as pool:
            writers = list(pool.map(writer, partitions))  # each waits on its coordinator
        for partition, made in zip(partitions, writers, strict=True):
            stale = self._fenced.pop(partition, None)
            if stale is not None:
                stale.close()
            self._fenced[partition] = made

    def restore_all(self, partitions: list[int]) -> dict[int, Restored]:
        """:meth:`restore` every partition, at the same time (their reads wait on Kafka)."""
        if len(partitions) <= 1:
            return {p: self.restore(p) for p in partitions}
        with ThreadPoolExecutor(min(8, len(partitions))) as pool:
            return dict(zip(partitions, pool.map(self.restore, partitions), strict=True))

    def restore(self, partition: int) -> Restored:
        """Bring the state of a fenced ``partition`` up to the ledger (see the module). A
        state file that fails while it is read is deleted, and the restore starts again."""
        try:
            return self._restore(partition)
        except StateFileError as error:
            log.warning(
                "partition %s: %s; deleting it, restoring from the ledger", partition, error
            )
            self._broken_file(partition)
            return self._restore(partition)

    def _broken_file(self, partition: int) -> None:
        """Forget the partition's state and delete its file (the ledger rebuilds it)."""
        held = self._owned.pop(partition, None)
        if held is not None:
            held.sequencer.state.close()
            held.writer.close()  # the restore fences the partition again
        if self.config.state_files:
            remove_state_file(state_file(self.config.data_dir, partition))

    def _restore(self, partition: int) -> Restored:
        started = time.monotonic()
        c = self.config
        if partition not in self._fenced:
            self.fence([partition])
        writer = self._fenced.pop(partition)
        held = self._owned.pop(partition, None)
        if held is not None:
            held.writer.close()
        reader = Reader(Connection(c.servers, "okr-sequencer-restore", c.timeout_s))
        sequencer: PartitionSequencer | None = None
        try:
            if held is not None and held.intact:  # what it wrote is in it: read what came after
                sequencer, ledger_from = held.sequencer, held.sequencer.state.ledger_next
                rejections_from: int | None = held.rejections_next
            else:
                if held is not None:
                    held.sequencer.state.close()
                sequencer, ledger_from, rejections_from = self._cold(partition, reader)
            read = sequencer.fold_ledger(
                StoredRecord(r.offset, r.value, r.headers, r.key)
                for r in reader.read(c.topics.ledger, {partition: ledger_from})
            )
            ledger_next = reader.positions[partition]
            lane = sequencer.lane
            sequencer.fold_rejections(
                StoredRecord(r.offset, r.value, r.headers)
                for r in reader.read(c.topics.rejections, {lane: rejections_from})
            )
            rejections_next = reader.positions[lane]
            sequencer.resume()
            resume = sequencer.resume_offset
            if resume is None:
                resume = reader.beginnings(c.topics.intake, [partition])[partition]
        except BaseException:
            writer.close()
            if sequencer is not None:
                sequencer.state.close()  # lets go of its file
            raise
        finally:
            reader.close()
        writer.resume(partition, ledger_next, sequencer.state.writer_heads())
        self._owned[partition] = Owned(sequencer, writer, rejections_next)
        seconds = time.monotonic() - started
        log.info(
            "partition %s: %s in %.2fs (%s ledger records read), resuming at %s "
            "(%s records there already recorded)",
            partition,
            "caught up" if held is not None and held.intact else "restored",
            seconds,
            read,
            resume,
            sequencer.pending_recorded,
        )
        return Restored(resume, seconds, read)

    def _cold(
        self, partition: int, reader: Reader
    ) -> tuple[PartitionSequencer, int | None, int | None]:
        """A sequencer from the partition's state file, if it is still one of this ledger
        (else from nothing), and where to read the ledger and the rejections from."""
        c = self.config
        path = state_file(c.data_dir, partition) if c.state_files else None
        state = open_state(path, partition)
        if isinstance(state, FileState) and not self._matches(state, partition, reader):
            log.warning(
                "partition %s: %s is not a state of this ledger; rebuilding", partition, path
            )
            state.discard()
            state = open_state(path, partition)
        lane = self.log.lanes.of(partition)
        return PartitionSequencer.from_state(
            partition, self.log.partition_count, c.policy, state, lane
        )

    def _matches(self, state: FileState, partition: int, reader: Reader) -> bool:
        """Whether the state file's last event is still in the ledger, with the same hash."""
        end = state.ledger_next
        if end is None or end == 0:
            return True
        for stored in reader.read(self.config.topics.ledger, {partition: end - 1}):
            record = decode_event(stored.value)
            org_id = record.get("org_id")
            if stored.offset != end - 1 or not isinstance(org_id, str):
                return False
            head = state.head(org_id)
            return (head.sequence, head.hash) == (record.get("sequence"), record.get("hash"))
        return False

    def drop(self, partition: int) -> None:
        """The partition went to another worker: forget it."""
        owned = self._owned.pop(partition, None)
        if owned is not None:
            owned.writer.close()
            owned.sequencer.state.close()  # lets go of its file: the next owner may be here
        fenced = self._fenced.pop(partition, None)
        if fenced is not None:
            fenced.close()

    def sequence(self, partition: int, records: list[IntakeRecord]) -> Sequenced:
        """Decide a batch of ``partition`` and write it (see the module docstring)."""
        owned = self._owned.get(partition)
        if owned is None or not owned.intact:
            return Sequenced(Verdict.RESTORE, None)
        self._deciding.acquire()
        deciding = ExitStack()
        deciding.callback(self._deciding.release)
        decided = _Once(deciding.close)
        try:
            deciding.enter_context(collector_paused())
            return self._sequence(partition, owned, records, decided)
        finally:
            decided()

    def _sequence(
        self, partition: int, owned: Owned, records: list[IntakeRecord], decided: "_Once"
    ) -> Sequenced:
        started = time.monotonic()
        sequencer = owned.sequencer
        owned.intact = False  # until the batch is written and kept
        try:
            with sequencer.deciding(records, utc_now()) as output:
                ledger_next = self._write(owned, output, decided) if output.outcomes else None
                if output.restore:  # the state took an event half: do not keep it
                    raise _HalfAppliedError
                sequencer.keep(output, ledger_next, owned.rejections_next)
        except WriterFencedError:
            self.drop(partition)
            return Sequenced(Verdict.FENCED, None)
        except StateFileError as error:  # the batch may be written; the file is not trusted
            log.warning(
                "partition %s: %s; deleting it, restoring from the ledger", partition, error
            )
            self._broken_file(partition)
            return Sequenced(Verdict.RESTORE, None)
        except (LedgerUnavailableError, SequenceConflictError) as error:
            log.warning("partition %s: %s; restoring from the ledger", partition, error)
            return Sequenced(Verdict.RESTORE, None)
        except _HalfAppliedError:
            return Sequenced(Verdict.RESTORE, None)
        owned.intact = True
        if not output.outcomes:
            return Sequenced(Verdict.WRITTEN, sequencer.resume_offset)
        log.debug(
            "partition %s: offsets %s-%s, %s events, %s rejections, %s replayed",
            partition,
            records[0].offset,
            records[-1].offset,
            len(output.events),
            len(output.rejections),
            output.replayed,
        )
        recorded = len(output.events) + len(output.rejections) + output.replayed
        return Sequenced(
            Verdict.WRITTEN,
            sequencer.resume_offset,
            events=len(output.events),
            rejections=dict(Counter(r.reason.value for r, _ in output.rejections)),
            duplicates=len(output.outcomes) - recorded,
            outcomes=len(output.outcomes),
            seconds=time.monotonic() - started,
        )

    def _write(self, owned: Owned, output: BatchOutput, decided: "_Once") -> int | None:
        """Write a decided batch; the ledger offset after its last event (None: it has none).
        Raises :class:`SequenceConflictError` when another writer's record landed among its
        events (the outcomes were not written: restore)."""
        topic = self.config.topics.outcomes
        events = [(event, (origin.header(),)) for event, origin in output.events]
        rejections = [(rejection, (origin.header(),)) for rejection, origin in output.rejections]
        outcomes = [OutRecord(topic, o.partition, o.key, o.value) for o in output.outcomes]
        decided()  # the next batch decides while this one is written and kept
        with self._transacting:
            appended = owned.writer.append(events, rejections, outcomes)
        if appended.moved:
            raise SequenceConflictError("another writer appended to the ledger partition")
        if appended.rejections:
            owned.rejections_next = max(owned.rejections_next, appended.rejections[-1] + 1)
        offsets = [o for mine in appended.offsets.values() for o in mine]
        return max(offsets) + 1 if offsets else None

    def close(self) -> None:
        for partition in {*self._owned, *self._fenced}:
            self.drop(partition)
        self.log.close()


class _Once:
    """Calls ``function`` the first time it is called, and never again."""

    def __init__(self, function: Callable[[], object]) -> None:
        self._function: Callable[[], object] | None = function

    def __call__(self) -> None:
        function, self._function = self._function, None
        if function is not None:
            function()


class CoreRunner(Protocol):
    """Runs :class:`SequencerCore` methods somewhere."""

    async def call(self, method: str, *args: Any) -> Any: ...

    def close(self) -> None: ...


class ThreadRunner:
    """The core in threads of this process: batches of different partitions overlap."""

    def __init__(self, config: WorkerConfig) -> None:
        self.core = SequencerCore(config)
        self._threads = ThreadPoolExecutor(8, thread_name_prefix="okr-sequencer")

    async def call(self, method: str, *args: Any) -> Any:
        function: Callable[..., Any] = getattr(self.core, method)
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    def close(self) -> None:
        """Finish the calls under way (a transaction ends rather than being left open), then
        close the writers."""
        self._threads.shutdown(wait=True, cancel_futures=True)
        self.core.close()


class ProcessRunner:
    """The core alone in a child process: it has a core of its own. Calls go over a pipe,
    numbered, several at a time (one per partition, as the lanes make them); the child runs
    each in a thread of its own, as :class:`ThreadRunner` does, so that one partition's batch
    is decided while another's transaction waits on Kafka (at most one transaction at a time:
    see the module docstring). The child dies with the worker: it is killed when its parent
    dies (even by SIGKILL), ignores the terminal's SIGINT, and finishes the calls under way
    when the worker stops (:meth:`close`)."""

    def __init__(
        self,
        config: WorkerConfig,
        core: Callable[[WorkerConfig], Any] = SequencerCore,
        ahead: bool = False,
    ) -> None:
        """``core`` makes the object whose methods the child runs (importable by name: the
        child may be spawned); the tests give one of their own.

        The child is spawned: a new interpreter, which imports the sequencer's modules again.
        ``ahead``: made ahead of the worker's start, before it imported anything else
        (:func:`okr_ledger.worker_cli.worker`). The child is then forked if this process
        runs no thread but its main one (:func:`alone`), and so starts with those modules
        imported already; and it makes its core (whose Kafka clients read the topics) only
        once :meth:`go` says so, where the worker's start would have made the child."""
        self._config = config
        forked = ahead and alone()  # never fork a process with threads: see alone()
        self.method = "fork" if forked else "spawn"
        """How the child was started."""
        context = get_context("fork") if forked else get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process: ForkProcess | SpawnProcess = context.Process(
            target=_forked_child_main if forked else _child_main,
            args=(config, child_end, os.getpid(), core, self._pipe if forked else ahead),
            name="okr-sequencer",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._numbers = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._lock = threading.Lock()
        """Guards :attr:`_waiting` and :attr:`_ended`."""
        self._ended: LedgerUnavailableError | None = None
        self._reaping = threading.Lock()
        """One thread at a time waits for the child (the results thread when the pipe breaks,
        :meth:`close` when the worker stops): of two concurrent ``waitpid`` calls, the one
        that loses gets ECHILD and multiprocessing reads the exit code as None."""
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="okr-sequencer-pipe")
        self._receiver = threading.Thread(
            target=self._receive, name="okr-sequencer-results", daemon=True
        )
        self._receiver.start()

    def go(self) -> None:
        """Let a child made ``ahead`` make its core and take calls."""
        self._send_now(True)

    def _send_now(self, message: object) -> None:
        """``message``, sent by the one thread that sends (waits for the calls queued)."""
        self._sender.submit(self._send, message).result()

    async def call(self, method: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        number = next(self._numbers)
        with self._lock:
            if self._ended is not None:
                raise self._ended
            self._waiting[number] = future
        try:
            await loop.run_in_executor(self._sender, self._send, (number, method, args))
            return await future
        finally:
            with self._lock:
                self._waiting.pop(number, None)

    def _send(self, call: object) -> None:
        try:
            self._pipe.send(call)
        except (EOFError, OSError) as error:
            raise self._gone(error) from error

    def _receive(self) -> None:
        """The results as the child sends them, each to the call that waits for it."""
        while True:
            try:
                number, done, value = self._pipe.recv()
            except (EOFError, OSError) as error:
                ended = self._gone(error)
                with self._lock:
                    self._ended = ended
                    waiting, self._waiting = self._waiting, {}
                for future in waiting.values():
                    _settle_from_thread(future, False, ended)
                return
            with self._lock:
                found = self._waiting.pop(number, None)
            if found is not None:
                _settle_from_thread(found, done, value)

    def _gone(self, error: BaseException) -> LedgerUnavailableError:
        with self._reaping:
            self._process.join(1)
            code = self._process.exitcode
        return LedgerUnavailableError(f"the sequencer process ended (exit code {code}): {error!r}")

    def close(self) -> None:
        """Stop the child as a worker that leaves should: it takes no more calls, finishes
        those it runs (a batch's transaction ends, committed or aborted, instead of staying
        open until the next owner fences it) and closes its writers. Terminated if it has not
        done so within the Kafka timeout."""
        with suppress(OSError, TimeoutError):  # sent by the one thread that sends calls
            self._sender.submit(self._pipe.send, None).result(self._config.timeout_s)
        with self._reaping:
            self._process.join(self._config.timeout_s)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._pipe.close()
        self._sender.shutdown(wait=False, cancel_futures=True)


def _settle_from_thread(future: "asyncio.Future[Any]", done: bool, value: Any) -> None:
    """Resolve ``future`` (of another thread's loop) with a call's result or error."""

    def settle() -> None:
        if future.done():
            return  # the call was cancelled
        if done:
            future.set_result(value)
        else:
            future.set_exception(value)

    with suppress(RuntimeError):  # its loop is closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(settle)


CHILD_THREADS = 8
"""Calls the sequencer process runs at once (the lanes send one per partition)."""

MALLOC_ARENAS = 2
"""The C library's allocator arenas of the sequencer process (glibc's ``M_ARENA_MAX``). By
default glibc gives threads arenas of their own, up to 8 per core, and each keeps the pages
its thread freed: the process's threads (one per partition's call, the pipe, the Kafka
clients) then hold several copies of a batch's peak. Measured (``kafka_throughput.py``, one
worker, load 6-10): its peak RSS 159-167 -> 138-150 MiB, CPU per event unchanged within the
noise. The worker's main process keeps glibc's default: capped too, it used 25-30 µs more
CPU per event in the same runs. A value the environment sets (``MALLOC_ARENA_MAX``, or
``glibc.malloc.arena_max`` in ``GLIBC_TUNABLES``) wins."""


CHILD_GC_THRESHOLD = 100_000
"""The sequencer process's first-generation threshold of Python's cyclic collector (the
default is 700). A batch is decided with the collector paused, and the objects it made are
alive when it runs again (the batch is being written): at the default, that set off a
collection after every batch that scanned all of them, and every tenth one a second
generation's, ~7 µs of CPU per event in all (``benchmarks/profiling/sequencer_profile.py``,
which counts them). A batch's objects are freed as it ends (no cycles), so the count the
threshold compares, allocations less deallocations, comes back down after each: collections
now run only when objects really accumulate."""


def bound_malloc_arenas() -> None:
    """Cap the C library's arenas at :data:`MALLOC_ARENAS` (glibc only; before threads start:
    arenas made already stay)."""
    allocator.set_option(allocator.M_ARENA_MAX, MALLOC_ARENAS)


def alone() -> bool:
    """Whether this process runs one thread (Linux: counted in /proc, so threads that C
    libraries started count too); False where that cannot be told. Only then may it fork: a
    lock that another thread holds at the fork (the allocator's, logging's, a Kafka client's)
    stays held for good in the child."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _forked_child_main(
    config: WorkerConfig,
    pipe: PipeEnd,
    parent: int,
    make: Callable[[WorkerConfig], Any],
    worker_end: PipeEnd,
) -> None:
    """:func:`_child_main` in a forked child. It closes its copy of the worker's end of the
    pipe (else its own reads would never see the end of file when the worker is gone); what
    it has from the worker (its modules) is left out of the cyclic collector's scans
    (``gc.freeze``), which would otherwise go through all of it, and copy every page they
    touch, at each full collection."""
    worker_end.close()
    gc.freeze()
    _child_main(config, pipe, parent, make, held=True)  # forked only when made ahead


def _child_main(
    config: WorkerConfig,
    pipe: PipeEnd,
    parent: int,
    make: Callable[[WorkerConfig], Any] = SequencerCore,
    held: bool = False,
) -> None:
    """The sequencer process: numbered calls in, each run in a thread of its own; results (or
    the error raised) out, in the order they end. ``held``: the core is made once the worker
    sends ``True`` (:meth:`ProcessRunner.go`); its stop before that ends the child at once."""
    bound_malloc_arenas()
    gc.set_threshold(CHILD_GC_THRESHOLD, *gc.get_threshold()[1:])
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    for name in ("kafka", "librdkafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if held:
        try:
            if pipe.recv() is not True:
                return  # the worker stops before its start took the sequencer
        except EOFError:
            return  # the worker is gone
    core = make(config)
    sending = threading.Lock()
    trimmed = [time.monotonic()]

    def run(number: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            function: Callable[..., Any] = getattr(core, method)
            result: tuple[bool, Any] = True, function(*args)
        except Exception as error:
            log.exception("the sequencer's %s failed", method)
            result = False, error
        now = time.monotonic()
        if config.malloc_trim_s > 0 and now - trimmed[0] >= config.malloc_trim_s:
            trimmed[0] = now  # what a batch freed: not kept in its thread's arena
            allocator.trim()
        with sending, suppress(OSError):  # OSError: the worker is gone
            try:
                pipe.send((number, *result))
            except (TypeError, AttributeError, pickle.PicklingError):  # an error it cannot send
                pipe.send((number, False, RuntimeError(f"{method} failed: {result[1]!r}")))

    threads = ThreadPoolExecutor(CHILD_THREADS, thread_name_prefix="okr-sequencer")
    try:
        while True:
            try:
                call = pipe.recv()
            except EOFError:
                return  # the worker is gone
            if call is None:  # the worker stops: finish the calls under way, then close
                return
            threads.submit(run, *call)
    finally:
        threads.shutdown(wait=True, cancel_futures=True)
        core.close()


def _die_with(parent: int) -> None:
    """Be killed when the parent dies (Linux); otherwise exit if it is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)
