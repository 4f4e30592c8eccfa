"""Where a Kafka sequencer keeps one intake partition's state: in memory, or in a state file.

The ledger is the only truth; a state is what folding it gave, up to a point: ``ledger_next``,
the offset after the last ledger event it reflects. :class:`MemoryState` holds it in memory
(folded from the whole partition on every cold restore: its time and memory grow with the
ledger). :class:`FileState` keeps it in a standalone SQLite state store
(:class:`events.state_store.SqliteStateStore`), one file per partition in the worker's data
directory, saved with every batch written: a restore then folds only what the ledger holds
after it, and a batch reads only what it needs. The file is a cache: it is used only while
its last event is still in the ledger with the same hash (otherwise it is rebuilt from the
ledger). It is named by the partition number only (``sequencer-state/partition-<n>.db``: no
setting or input reaches a file name), and holds SQLite tables only: reading it runs no code
(no pickle). A file that cannot be read (corrupt, not SQLite) is deleted and made again from
the ledger; one held by another process leaves the state in memory.

A batch is decided inside :meth:`PartitionState.deciding` and kept with :meth:`keep` once it
is written: in a state file both happen in one SQLite transaction, rolled back if the write
fails, so the file never runs ahead of the ledger.
"""

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol
from uuid import UUID

from events.kafka_records import GENESIS
from events.log import ChainHead
from events.outcomes import Accepted
from events.sequencer import Probe, record_digest
from events.state import LedgerState
from events.state_store import SqliteStateStore
from schemas.errors import LedgerUnavailableError

log = logging.getLogger(__name__)

FOLD_CHUNK = 20_000
"""Ledger events folded into a state file per transaction when it catches up."""


class PartitionState(Protocol):
    """One partition's sequencer state (see the module docstring)."""

    @property
    def ledger_next(self) -> int | None:
        """The ledger offset after the last event this state reflects; None: none."""
        ...

    def deciding(self, probes: Sequence[Probe | None]) -> AbstractContextManager[LedgerState]:
        """The state to decide a batch on (with what ``probes`` name loaded)."""
        ...

    def keep(
        self, accepted: Sequence[Accepted], ledger_next: int | None, notes: Mapping[str, int]
    ) -> None:
        """Inside :meth:`deciding`, once the batch is written: keep its accepted events (the
        last at ``ledger_next`` - 1) and ``notes`` (the owner's own progress)."""
        ...

    def fold(self, records: Sequence[dict[str, Any]], ledger_next: int) -> None:
        """Fold ledger events read back (in partition order, the chain rule applied)."""
        ...

    def head(self, org_id: str) -> ChainHead:
        """The org's last event this state reflects (genesis if none)."""
        ...

    def knows(self, records: Sequence[dict[str, Any]]) -> list[bool]:
        """Whether this state folded each of these events (same org, id and content)."""
        ...

    def note(self, values: Mapping[str, int]) -> None:
        """Keep ``values`` with the state, now."""
        ...

    def writer_heads(self) -> Callable[[str], ChainHead]:
        """The heads a partition writer must continue, fixed now: the state itself moves
        while a batch is decided, before the batch is written."""
        ...

    def notes(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def _key(record: Mapping[str, Any]) -> bytes:
    return UUID(record["event_id"]).bytes


class MemoryState:
    """The state in memory (:class:`~events.state.LedgerState`)."""

    def __init__(self) -> None:
        self.state = LedgerState()
        self._ledger_next: int | None = None
        self._notes: dict[str, int] = {}

    @property
    def ledger_next(self) -> int | None:
        return self._ledger_next

    @contextmanager
    def deciding(self, probes: Sequence[Probe | None]) -> Iterator[LedgerState]:
        yield self.state  # a failed write leaves it ahead of the ledger: the owner drops it

    def keep(
        self, accepted: Sequence[Accepted], ledger_next: int | None, notes: Mapping[str, int]
    ) -> None:
        if ledger_next is not None:
            self._ledger_next = ledger_next
        self._notes.update(notes)

    def fold(self, records: Sequence[dict[str, Any]], ledger_next: int) -> None:
        state = self.state
        for record in records:
            state.apply_record(record, _key(record), record_digest(record))
        self._ledger_next = ledger_next

    def head(self, org_id: str) -> ChainHead:
        org = self.state.orgs.get(org_id)
        return ChainHead(org.last_sequence, org.last_hash) if org else GENESIS

    def knows(self, records: Sequence[dict[str, Any]]) -> list[bool]:
        known = self.state.known
        return [known.get((r["org_id"], _key(r))) == record_digest(r) for r in records]

    def note(self, values: Mapping[str, int]) -> None:
        self._notes.update(values)

    def writer_heads(self) -> Callable[[str], ChainHead]:
        heads = {
            org_id: ChainHead(org.last_sequence, org.last_hash)
            for org_id, org in self.state.orgs.items()
        }
        return lambda org_id: heads.get(org_id, GENESIS)

    def notes(self) -> dict[str, int]:
        return dict(self._notes)

    def close(self) -> None:
        pass


class FileHeldError(LedgerUnavailableError):
    """Another process holds the state file (an earlier owner on this machine)."""


class StateFileError(LedgerUnavailableError):
    """The state file failed while in use (corrupt, disk full): its owner deletes it and
    restores from the ledger."""


@contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise StateFileError(f"state file {path}: {error}") from error


class FileState:
    """The state in a standalone SQLite state store, locked by this process while it owns the
    partition (an earlier owner on the same machine that is paused cannot share it)."""

    def __init__(self, path: Path, partition: int) -> None:
        """Raises :class:`FileHeldError` when another process holds the file, and
        :class:`LedgerUnavailableError` when it cannot be opened or read."""
        self.path, self.partition = path, partition
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = path.with_suffix(".lock").open("ab")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            self._lock.close()
            raise FileHeldError(f"{path} is held by another process") from error
        try:
            self.store = SqliteStateStore.open(path, durable=False)  # the ledger is durable
        except BaseException:
            self._unlock()
            raise
        try:  # read it now: a corrupt file fails here, not in the middle of a batch
            self.store.notes()
            self.store.mark()
        except sqlite3.Error as error:
            self.store.close()
            self._unlock()
            raise LedgerUnavailableError(f"cannot read state file {path}: {error}") from error

    @property
    def ledger_next(self) -> int | None:
        with _file_errors(self.path):
            return self.store.mark().get(self.partition)

    @contextmanager
    def deciding(self, probes: Sequence[Probe | None]) -> Iterator[LedgerState]:
        """Raises :class:`StateFileError` when the file fails (the batch is not kept)."""
        with _file_errors(self.path), self.store.transaction():
            yield self.store.view(probes)

    def keep(
        self, accepted: Sequence[Accepted], ledger_next: int | None, notes: Mapping[str, int]
    ) -> None:
        mark = ledger_next if ledger_next is not None else self.ledger_next
        with _file_errors(self.path):
            self.store.note(notes)
            self.store.record(accepted, {} if mark is None else {self.partition: mark})

    def fold(self, records: Sequence[dict[str, Any]], ledger_next: int) -> None:
        with _file_errors(self.path), self.store.transaction():
            self.store.record(
                [Accepted(r, record_digest(r)) for r in records], {self.partition: ledger_next}
            )

    def head(self, org_id: str) -> ChainHead:
        with _file_errors(self.path):
            return self.store.head(org_id)

    def knows(self, records: Sequence[dict[str, Any]]) -> list[bool]:
        with _file_errors(self.path), self.store.transaction():
            known = self.store.view([]).known
            return [known.get((r["org_id"], _key(r))) == record_digest(r) for r in records]

    def note(self, values: Mapping[str, int]) -> None:
        with _file_errors(self.path), self.store.transaction():
            self.store.note(values)

    def writer_heads(self) -> Callable[[str], ChainHead]:
        return self.head  # saved at each commit: before a batch's, the batch's heads

    def notes(self) -> dict[str, int]:
        with _file_errors(self.path):
            return self.store.notes()

    def close(self) -> None:
        if self._lock is not None:
            self.store.close()
            self._unlock()

    def discard(self) -> None:
        """Close and delete the file (it is not a state of this ledger, or it failed)."""
        if self._lock is not None:
            self.store.close()
            remove_state_file(self.path)  # before the lock is let go
            self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def state_file(directory: Path, partition: int) -> Path:
    """The state file of ``partition`` in the worker's data directory: named by the partition
    number only, never by a setting or an input."""
    if type(partition) is not int or partition < 0:
        raise ValueError(f"a partition number is an int >= 0, not {partition!r}")
    return directory / "sequencer-state" / f"partition-{partition}.db"


def remove_state_file(path: Path) -> None:
    """Delete a state file and its SQLite journals (the ledger rebuilds it)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{path}{suffix}")


def open_state(path: Path | None, partition: int) -> PartitionState:
    """The partition's state file, or the state in memory when there is no directory for it or
    the file cannot be used: slower, never wrong. A file that SQLite cannot read (corrupt,
    truncated, not a database) is deleted and made anew (empty: the restore folds the ledger);
    a file held by another process is left alone."""
    if path is None:
        return MemoryState()
    for attempt in (1, 2):
        try:
            return FileState(path, partition)
        except FileHeldError as error:
            log.warning("partition %s: %s; keeping its state in memory", partition, error)
            return MemoryState()
        except (LedgerUnavailableError, OSError) as error:
            if attempt == 1 and path.exists():
                log.warning(
                    "partition %s: %s; deleting it, rebuilding from the ledger", partition, error
                )
                remove_state_file(path)
                continue
            log.warning("partition %s: %s; keeping its state in memory", partition, error)
    return MemoryState()
