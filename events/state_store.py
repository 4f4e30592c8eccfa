"""Where the sequencer's state is kept between batches: in memory, or in SQLite.

:func:`events.sequencer.decide_batch` reads a :class:`~events.state.LedgerState`. A
:class:`StateStore` hands out that state for one batch (:meth:`StateStore.view`) and keeps
what the batch's accepted events changed:

- :class:`MemoryStateStore` holds the whole state in memory, folded from the log (the Kafka
  ledger; what ``LedgerState`` always was). Its memory and start-up time grow with the ledger.
- :class:`SqliteStateStore` keeps it in SQLite tables: *embedded* in the ledger's own file,
  where every append updates them in the same transaction (so inside ``BEGIN IMMEDIATE`` they
  are current by construction, and nothing is folded on start), or *standalone* in a file of
  its own that records the log position it reflects (a Kafka sequencer's restorable state).
  Its view of a batch reads only what the batch touches: the ids the submissions name, in
  bulk, and each entity the rules look at, once.

The embedded store keeps no row per event keyed by its id: the ledger's ``events`` table
already has each event's id (``UNIQUE (org_id, event_id)``), head and body. An event's content
digest is computed from its stored body when a submission repeats it, and a check-in's key
result is read from its body. The digest of the bytes an event was submitted as is kept by
position (``sequencer_submitted``: appended in order, never a random insert). So an accepted
check-in adds a row to ``events`` and a 20-byte row at the end of ``sequencer_submitted``.
"""

import sqlite3
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from events.log import ChainHead, Mark
from events.outcomes import Accepted, Outcome
from events.sequencer import Probe, record_digest, repeats_only
from events.sqlite_connection import connect_wal
from events.state import CheckInState, KeyResultState, LedgerState, ObjectiveState, OrgState
from events.stored import read_event
from schemas.envelope import GENESIS_HASH, LedgerEvent, derive_event_key, event_id_text
from schemas.errors import LedgerUnavailableError
from schemas.registry import upcast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

STATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS sequencer_position (
    partition     INTEGER PRIMARY KEY,
    next_position INTEGER NOT NULL  -- every event before it is reflected in these tables
)""",
    """CREATE TABLE IF NOT EXISTS sequencer_flags (
    org_id TEXT    NOT NULL,
    kind   TEXT    NOT NULL,  -- strategy, swot, competitor, theme, unit, period
    id     TEXT    NOT NULL,
    flag   INTEGER NOT NULL,  -- defined / present / active / open
    PRIMARY KEY (org_id, kind, id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_objectives (
    org_id       TEXT NOT NULL,
    objective_id TEXT NOT NULL,
    status       TEXT NOT NULL,
    period_id    TEXT NOT NULL,
    parent_id    TEXT,
    PRIMARY KEY (org_id, objective_id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_links (
    org_id              TEXT NOT NULL,
    objective_id        TEXT NOT NULL,
    linked_objective_id TEXT NOT NULL,
    relation            TEXT NOT NULL,
    PRIMARY KEY (org_id, objective_id, linked_objective_id, relation)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_key_results (
    org_id        TEXT    NOT NULL,
    key_result_id TEXT    NOT NULL,
    objective_id  TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    start         REAL    NOT NULL,
    active        INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_result_id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_retracted (
    org_id   TEXT NOT NULL,
    event_id BLOB NOT NULL,  -- a retracted check-in (16 bytes)
    PRIMARY KEY (org_id, event_id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_sources (
    org_id          TEXT NOT NULL,
    source          TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    event_id        BLOB NOT NULL,  -- the first event that carried it (16 bytes)
    PRIMARY KEY (org_id, source, source_event_id)
) WITHOUT ROWID""",
)
"""The tables of both kinds of store (created by the ledger's schema migration when embedded)."""

LEDGER_TABLES = (
    """CREATE TABLE IF NOT EXISTS sequencer_submitted (
    position INTEGER PRIMARY KEY,  -- of the event in the ledger's events table
    digest   BLOB    NOT NULL      -- of the bytes it was submitted as (its submission digest)
)""",
)
"""What an embedded store keeps beside the ledger's ``events``."""

NOTES_TABLE = """CREATE TABLE IF NOT EXISTS sequencer_notes (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL  -- whatever else the store's owner records with the state
) WITHOUT ROWID"""

STANDALONE_TABLES = (
    """CREATE TABLE IF NOT EXISTS sequencer_heads (
    org_id   TEXT    NOT NULL PRIMARY KEY,
    sequence INTEGER NOT NULL,
    hash     TEXT    NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sequencer_events (
    org_id        TEXT NOT NULL,
    event_id      BLOB NOT NULL,
    digest        BLOB NOT NULL,
    submitted     BLOB,
    key_result_id TEXT,  -- of a CheckInRecorded
    PRIMARY KEY (org_id, event_id)
) WITHOUT ROWID""",
)
"""What a standalone store keeps that an embedded one reads from the ledger's ``events``."""

_IN_LIST = 400
"""Keys per ``IN (...)`` list (SQLite allows 999 parameters in its oldest builds)."""
_CATCH_UP_CHUNK = 20_000
"""Events folded into one view (then saved and dropped) when a store catches up."""
KEPT_MAX = 20_000
"""Key results and objectives an embedded store keeps between its transactions (:class:`_Kept`);
past it, it starts again from what the last one held."""


class _Kept:
    """The key results and objectives (by org and id) as this writer's last commit left them in
    the tables, and the log's end after that commit.

    They are the rows of the tables as long as nothing was appended since: every change to the
    tables comes with an append (the writer that makes it holds the lock, and events are never
    changed or removed, so the log's end only grows). A view whose log end is ``end`` takes them
    instead of reading them again; any other drops them. The objects are the last view's own
    (handed to the next view as they are): a transaction that fails after a view changed them
    drops them too (:meth:`SqliteStateStore.rolled_back`)."""

    __slots__ = ("end", "key_results", "objectives")

    def __init__(self, end: int) -> None:
        self.end = end
        self.key_results: dict[tuple[str, str], KeyResultState] = {}
        self.objectives: dict[tuple[str, str], ObjectiveState] = {}

    def __len__(self) -> int:
        return len(self.key_results) + len(self.objectives)

    def take(self, view: "_View") -> None:
        """What ``view`` read or wrote of both maps (its entries win)."""
        for org_id, org in dict.items(view.orgs):
            key_results, objectives = org.key_results, org.objectives
            self.key_results.update(((org_id, id_), k) for id_, k in dict.items(key_results))
            self.objectives.update(((org_id, id_), o) for id_, o in dict.items(objectives))


class StateStore(Protocol):
    """The sequencer's state, as :class:`events.ledger.Ledger` uses it for each batch."""

    @property
    def folds(self) -> bool:
        """Whether the log must fold into it what other writers appended (:meth:`fold`; False:
        it reads the log's own tables, current under the log's lock)."""
        ...

    def prepare(self, probes: Sequence[Probe | None]) -> None:
        """Before the write lock is taken: read what the next batch names, if the store can
        (its view then needs no reads of its own unless another writer appends meanwhile)."""
        ...

    def repeats(self, probes: Sequence[Probe | None]) -> list[Outcome] | None:
        """After :meth:`prepare`, before the lock: the outcomes of a batch whose every
        submission is a byte-identical repeat of an event the store holds (see
        :func:`~events.sequencer.repeats_only`), when the store can tell; else None (the batch
        is decided under the lock, as any other)."""
        ...

    def read_ahead(self) -> Mapping[tuple[str, bytes], bytes]:
        """After :meth:`prepare`: the submission digests it read, by ``(org, event key)``
        (what :func:`~events.sequencer.parse_ahead` need not parse: byte-identical repeats,
        unless another writer appends first; empty if it read none)."""
        ...

    def view(self, probes: Sequence[Probe | None]) -> LedgerState:
        """The state to decide a batch on, with what ``probes`` name loaded in bulk. The batch's
        accepted events are folded into it; a persistent store saves them with the append."""
        ...

    def fold(self, event: LedgerEvent) -> None:
        """An event the log holds (appended by another writer) that the next view must reflect."""
        ...

    def head(self, org_id: str) -> ChainHead:
        """The org's last event reflected (sequence 0 and the genesis hash if none)."""
        ...

    def mark(self) -> Mark:
        """How far this store has read the log (see :data:`events.log.Mark`)."""
        ...

    def advance(self, mark: Mark) -> None:
        """The log says the store now reflects everything before ``mark``."""
        ...

    def forget(self) -> None:
        """The append failed: drop what the store holds beyond the log."""
        ...


class MemoryStateStore:
    """The whole state in memory, folded from the log (on the first batch: all of it)."""

    folds = True

    def __init__(self, state: LedgerState | None = None) -> None:
        self.state = state or LedgerState()
        self._mark: Mark = {}

    def prepare(self, probes: Sequence[Probe | None]) -> None:
        """Nothing: everything is in memory."""

    def repeats(self, probes: Sequence[Probe | None]) -> list[Outcome] | None:
        """None: this state keeps no submission digests (and may lag behind the log)."""
        return None

    def read_ahead(self) -> Mapping[tuple[str, bytes], bytes]:
        """Nothing: this state keeps no submission digests."""
        return {}

    def view(self, probes: Sequence[Probe | None]) -> LedgerState:
        return self.state

    def fold(self, event: LedgerEvent) -> None:
        self.state.apply(event, record_digest(vars(event)))

    def head(self, org_id: str) -> ChainHead:
        org = self.state.orgs.get(org_id)
        return ChainHead(org.last_sequence, org.last_hash) if org else ChainHead(0, GENESIS_HASH)

    def mark(self) -> Mark:
        return self._mark

    def advance(self, mark: Mark) -> None:
        self._mark = mark

    def forget(self) -> None:
        """The state ran ahead of the log: fold it again from the start."""
        self.state = LedgerState()
        self._mark = {}


# --- the SQLite store's view ---------------------------------------------------------------


class _Absent:
    """What :class:`_Cached` remembers for a key that has no row."""


_ABSENT = _Absent()
_dict_get = dict.get


class _Cached(dict[K, V]):
    """One of the state's maps over a SQLite table: a dict of the entries read (or written)
    so far; any other key is read on first use (``get``, ``in``, ``[]``, ``setdefault``: what
    the rules and the fold use). What it read is remembered, so that :meth:`changed` gives
    only the entries a batch changed (in place, too) and each key costs at most one query."""

    __slots__ = ("_absent", "_read", "_read_rows", "_snapshot")

    def __init__(
        self,
        read: Callable[[K], V | None] | None,
        snapshot: Callable[[V], Hashable] | None = None,
    ) -> None:
        super().__init__()
        self._read = read
        """None: the table has no rows for this map (a new org)."""
        self._read_rows: dict[K, Any] = {}
        self._snapshot = snapshot
        """The part of a value the table holds, to compare; None: the (immutable) value itself."""
        self._absent: set[K] = set()

    def loaded(self, key: K, value: V | None) -> None:
        """Note what the table holds for ``key`` (read in bulk by the store)."""
        if value is None:
            self._absent.add(key)
        else:
            dict.__setitem__(self, key, value)
            self._read_rows[key] = value if self._snapshot is None else self._snapshot(value)

    def unread(self, key: K) -> bool:
        """Whether nothing is known of ``key`` yet (neither read, nor written, nor absent)."""
        return not dict.__contains__(self, key) and key not in self._absent

    def unreadable(self) -> bool:
        """Whether the table has no rows for this map (nothing to read)."""
        return self._read is None

    def absent(self, key: K) -> bool:
        """Whether ``key`` is known to have no row (not read yet: False)."""
        return key in self._absent and not dict.__contains__(self, key)

    def _fetch(self, key: Any) -> V | None:
        if key in self._absent or self._read is None:
            return None
        value = self._read(key)
        self.loaded(key, value)
        return value

    def get(self, key: K, default: Any = None) -> Any:
        held = _dict_get(self, key, _ABSENT)  # one C call for an entry in hand (most)
        if held is not _ABSENT:
            return held
        if key in self._absent:  # the next most common: read in bulk, and not there
            return default
        value = self._fetch(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._fetch(key) is not None

    def __missing__(self, key: K) -> V:
        value = self._fetch(key)
        if value is None:
            raise KeyError(key)
        return value

    def setdefault(self, key: K, default: V) -> V:
        value: V | None = self.get(key)
        if value is None:
            self[key] = value = default
        return value

    def changed(self) -> Iterator[tuple[K, V]]:
        """The entries that differ from what the table held."""
        read_rows, snapshot = self._read_rows, self._snapshot
        for key, value in dict.items(self):
            before = read_rows.get(key, _ABSENT)
            if before is _ABSENT or before != (value if snapshot is None else snapshot(value)):
                yield key, value


class _CachedSet(set[K]):
    """A set over a SQLite table, as :class:`_Cached` is a dict: ``in`` reads on first use;
    ``add`` and ``discard`` change it (see :meth:`added` and :meth:`removed`)."""

    __slots__ = ("_absent", "_present", "_read")

    def __init__(self, read: Callable[[K], bool] | None) -> None:
        super().__init__()
        self._read = read
        self._present: set[K] = set()
        self._absent: set[K] = set()

    def _fetch(self, key: Any) -> bool:
        if key in self._present:
            return False  # read, then discarded
        if key in self._absent or self._read is None:
            return False
        if self._read(key):
            self._present.add(key)
            set.add(self, key)
            return True
        self._absent.add(key)
        return False

    def __contains__(self, key: object) -> bool:
        return set.__contains__(self, key) or self._fetch(key)

    def discard(self, key: object) -> None:
        self._fetch(key)
        set.discard(self, key)

    def added(self) -> set[K]:
        return set(self) - self._present

    def removed(self) -> set[K]:
        return self._present - set(self)


@dataclass(slots=True, eq=False, weakref_slot=True)
class _View(LedgerState):
    """A :class:`LedgerState` whose maps read a SQLite store's tables on demand."""

    read_orgs: dict[str, tuple[int, str, bool]] = field(default_factory=dict)
    """Each org's head and strategy flag as read."""
    where: dict[str, dict[bytes, tuple[Any, bytes | None]]] = field(default_factory=dict)
    """Per org, where each stored event a batch names was found (to compute its digest if
    asked) and its submission digest: what the store's ``find`` gave."""
    applied: set[tuple[str, bytes]] = field(default_factory=set)
    """The events folded into this view (they need not be folded again when stored)."""
    carried: dict[tuple[str, bytes], tuple[str, str | None]] = field(default_factory=dict)
    """``(source, source_event_id)`` of each event folded into this view."""
    derived: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    """``(org_id, source, source_event_id)`` -> the event id it derives, where known already."""

    def apply_record(
        self,
        record: Any,
        event_key: bytes,
        digest: bytes,
        submitted: bytes | None = None,
    ) -> None:
        key = (record["org_id"], event_key)
        self.applied.add(key)
        self.carried[key] = (record["source"], record["source_event_id"])
        if submitted is not None:
            self.submitted_digests[key] = submitted
        LedgerState.apply_record(self, record, event_key, digest, submitted)


def _changes(mapping: dict[K, V]) -> Iterable[tuple[K, V]]:
    """The entries of one of a view's maps that differ from the store (all, if it never read)."""
    return mapping.changed() if isinstance(mapping, _Cached) else mapping.items()


def _chunks(items: Sequence[V], size: int = _IN_LIST) -> Iterator[Sequence[V]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(count: int) -> str:
    return ",".join("?" * count)


# --- where a store finds events: the ledger's own table, or its own ------------------------


class _Events(Protocol):
    """How a SQLite store finds the events it reflects (heads, ids, check-ins)."""

    reads_log: bool
    """The events are the log's own rows: the store catches up from them, and keeps no digest."""
    implies_sources: bool
    """An event whose id its ``source_event_id`` derives needs no ``sequencer_sources`` row."""

    def head(self, org_id: str) -> ChainHead | None: ...

    def find(self, org_id: str, keys: Mapping[str, bytes]) -> dict[bytes, tuple[Any, bytes | None]]:
        """For each stored key (``keys``: by its text): where to read it again, and its
        submission digest."""
        ...

    def digest(self, org_id: str, key: bytes, where: Any) -> bytes | None:
        """The content digest of the stored event ``key`` (``where``: from :meth:`find`)."""
        ...

    def check_in(self, org_id: str, key: bytes) -> str | None:
        """The key result of stored check-in ``key`` (None: no such CheckInRecorded)."""
        ...

    def carried(self, org_id: str, key: bytes) -> tuple[str, str | None] | None:
        """``(source, source_event_id)`` of stored event ``key``."""
        ...

    def save(
        self,
        view: _View,
        heads: list[tuple[str, int, str]],
        submitted: list[tuple[int, bytes | bytearray]],
    ) -> None:
        """Store what ``view`` added (``heads``: the orgs' heads that changed; ``submitted``:
        the submission digests of the events the log just appended, by position)."""
        ...

    def end(self) -> int:
        """The position after the last event of the log these events come from."""
        ...

    def after(self, position: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """The log's events at ``position`` and later, with their positions."""
        ...


class _LedgerEvents:
    """The ledger's ``events`` table (the embedded store)."""

    reads_log = True
    implies_sources = True

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def head(self, org_id: str) -> ChainHead | None:
        # From the newest body, not its columns: a column that contradicts its event is then
        # found by the log's continuity check ("the ledger is damaged").
        row = self._db.execute(
            "SELECT CAST(body AS BLOB), sequence FROM events WHERE org_id = ?"
            " ORDER BY sequence DESC LIMIT 1",
            (org_id,),
        ).fetchone()
        if row is None:
            return None
        record = read_event(row[0] or b"", org_id, row[1])
        return ChainHead(record["sequence"], record["hash"])

    def find(self, org_id: str, keys: Mapping[str, bytes]) -> dict[bytes, tuple[Any, bytes | None]]:
        found: dict[bytes, tuple[Any, bytes | None]] = {}
        texts = keys
        for chunk in _chunks(sorted(texts)):
            # UNIQUE (org_id, event_id)'s index holds event_id and position: no event row is read.
            rows = self._db.execute(
                "SELECT e.event_id, e.position, s.digest FROM events e"
                " LEFT JOIN sequencer_submitted s ON s.position = e.position"
                f" WHERE e.org_id = ? AND e.event_id IN ({_marks(len(chunk))})",
                (org_id, *chunk),
            )
            for event_id, position, submitted in rows:
                found[texts[event_id]] = (position, submitted)
        return found

    def _record(self, org_id: str, key: bytes, position: Any = None) -> dict[str, Any] | None:
        if position is None:
            row = self._db.execute(
                "SELECT CAST(body AS BLOB), sequence FROM events WHERE org_id = ? AND event_id = ?",
                (org_id, event_id_text(key)),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT CAST(body AS BLOB), sequence FROM events WHERE position = ?", (position,)
            ).fetchone()
        return None if row is None else read_event(row[0] or b"", org_id, row[1])

    def digest(self, org_id: str, key: bytes, where: Any) -> bytes | None:
        record = self._record(org_id, key, where)
        return None if record is None else record_digest(record)

    def check_in(self, org_id: str, key: bytes) -> str | None:
        record = self._record(org_id, key)
        if record is None or record["type"] != "CheckInRecorded":
            return None
        data = upcast(record["type"], record["schema_version"], record["data"])
        key_result_id: str = data["key_result_id"]
        return key_result_id

    def carried(self, org_id: str, key: bytes) -> tuple[str, str | None] | None:
        record = self._record(org_id, key)
        return None if record is None else (record["source"], record["source_event_id"])

    def save(
        self,
        view: _View,
        heads: list[tuple[str, int, str]],
        submitted: list[tuple[int, bytes | bytearray]],
    ) -> None:
        """The submission digests: the rest is the log's own rows."""
        self._db.executemany("INSERT INTO sequencer_submitted VALUES (?, ?)", submitted)

    def end(self) -> int:
        row = self._db.execute("SELECT coalesce(max(position), 0) + 1 FROM events").fetchone()
        end: int = row[0]
        return end

    def after(self, position: int) -> Iterator[tuple[int, dict[str, Any]]]:
        cursor = self._db.execute(
            "SELECT position, CAST(body AS BLOB), org_id, sequence FROM events"
            " WHERE position >= ? ORDER BY position",
            (position,),
        )
        while rows := cursor.fetchmany(2000):
            for at, body, org_id, sequence in rows:
                yield at, read_event(body or b"", org_id, sequence)


class _OwnEvents:
    """A standalone store's own ``sequencer_heads`` and ``sequencer_events``."""

    reads_log = False
    implies_sources = False

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def head(self, org_id: str) -> ChainHead | None:
        row = self._db.execute(
            "SELECT sequence, hash FROM sequencer_heads WHERE org_id = ?", (org_id,)
        ).fetchone()
        return None if row is None else ChainHead(row[0], row[1])

    def find(self, org_id: str, keys: Mapping[str, bytes]) -> dict[bytes, tuple[Any, bytes | None]]:
        found: dict[bytes, tuple[Any, bytes | None]] = {}
        for chunk in _chunks(sorted(keys.values())):
            rows = self._db.execute(
                "SELECT event_id, digest, submitted FROM sequencer_events"
                f" WHERE org_id = ? AND event_id IN ({_marks(len(chunk))})",
                (org_id, *chunk),
            )
            for key, digest, submitted in rows:
                found[key] = (digest, submitted)
        return found

    def digest(self, org_id: str, key: bytes, where: Any) -> bytes | None:
        if where is not None:
            digest: bytes = where
            return digest
        row = self._db.execute(
            "SELECT digest FROM sequencer_events WHERE org_id = ? AND event_id = ?",
            (org_id, key),
        ).fetchone()
        return None if row is None else row[0]

    def check_in(self, org_id: str, key: bytes) -> str | None:
        row = self._db.execute(
            "SELECT key_result_id FROM sequencer_events WHERE org_id = ? AND event_id = ?",
            (org_id, key),
        ).fetchone()
        return None if row is None else row[0]

    def carried(self, org_id: str, key: bytes) -> tuple[str, str | None] | None:
        return None  # never asked: this store keeps every source's first event itself

    def save(
        self,
        view: _View,
        heads: list[tuple[str, int, str]],
        submitted: list[tuple[int, bytes | bytearray]],
    ) -> None:
        db = self._db
        db.executemany("INSERT OR REPLACE INTO sequencer_heads VALUES (?, ?, ?)", heads)
        check_ins = {
            (org_id, key): check_in.key_result_id
            for org_id, org in dict.items(view.orgs)
            for key, check_in in dict.items(org.check_ins)
        }
        db.executemany(
            "INSERT INTO sequencer_events VALUES (?, ?, ?, ?, ?)",
            [
                (
                    org_id,
                    key,
                    digest,
                    view.submitted_digests.get((org_id, key)),
                    check_ins.get((org_id, key)),
                )
                for (org_id, key), digest in _changes(view.known)
            ],
        )

    def end(self) -> int:
        raise LedgerUnavailableError("a standalone state store has no log to catch up from")

    def after(self, position: int) -> Iterator[tuple[int, dict[str, Any]]]:
        raise LedgerUnavailableError("a standalone state store has no log to catch up from")


# --- the store -------------------------------------------------------------------------------


class _Sources(_Cached[tuple[str, str, str], bytes]):
    """``sources`` of a store whose events imply some of them: ``setdefault`` of an event whose
    own id its source's id derives reads nothing (it is the first, or an earlier one is stored;
    either way no row is written, and a later read finds it)."""

    __slots__ = ("_derived", "_implied")

    def __init__(
        self,
        read: Callable[[tuple[str, str, str]], bytes | None],
        implied: bool,
        derived: dict[tuple[str, str, str], bytes],
    ) -> None:
        super().__init__(read)
        self._implied = implied
        self._derived = derived
        """The view's ids derived already (by the batch's probes), not to derive them again."""

    def setdefault(self, key: tuple[str, str, str], default: bytes) -> bytes:
        if dict.__contains__(self, key):
            first: bytes = dict.__getitem__(self, key)
            return first
        if key in self._absent:  # known to have no first: this one is
            self[key] = default
            return default
        if self._implied and default == (self._derived.get(key) or derive_event_key(*key)):
            return default
        return super().setdefault(key, default)


_FLAG_KINDS = (("swot", "swot"), ("theme", "themes"), ("unit", "units"), ("period", "periods"))
"""``sequencer_flags.kind`` of each of an org's flag maps (its attribute in ``OrgState``)."""


class SqliteStateStore:
    """:class:`StateStore` in SQLite tables (see the module docstring).

    Everything it reads and writes runs in the caller's transaction: the ledger's own
    (embedded: :class:`~events.sqlite_log.SqliteEventLog` opens one per append), or
    :meth:`transaction` (standalone). A view lives until the transaction ends (:meth:`end`).
    """

    def __init__(self, db: sqlite3.Connection, events: _Events) -> None:
        self._db = db
        self._events = events
        self._view: _View | None = None
        self._pending: list[LedgerEvent] = []
        self._prepared: tuple[Sequence[Probe | None], int, _View] | None = None
        """A view loaded before the lock: for which probes, at which end of the log."""
        self._kept: _Kept | None = None
        """Embedded: what the last commit left, while the log's end has not moved since."""
        self._committing: _Kept | None = None
        """What :attr:`_kept` becomes once the transaction that saved it commits."""

    @classmethod
    def embedded(cls, db: sqlite3.Connection) -> "SqliteStateStore":
        """The store in a ledger file (its tables made by the ledger's schema migration)."""
        return cls(db, _LedgerEvents(db))

    @classmethod
    def open(cls, path: Path | str, durable: bool = True) -> "SqliteStateStore":
        """A standalone store in its own file (created if missing). ``durable=False``, for a
        store that is a cache of a log it can fold again (the Kafka sequencer's state files):
        no fsync per commit (WAL, ``synchronous=NORMAL``); the file stays consistent, and a
        power loss may take back its last commits, never leave half of one."""
        try:
            db = connect_wal(path, durable=durable)
            store = cls(db, _OwnEvents(db))
            with store.transaction():
                for statement in (*STATE_TABLES, *STANDALONE_TABLES, NOTES_TABLE):
                    db.execute(statement)
        except (OSError, sqlite3.Error) as error:
            raise LedgerUnavailableError(f"cannot open state store {path}: {error}") from error
        return store

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (a standalone store's owner decides in it)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self.end()
        self._db.execute("COMMIT")

    def end(self) -> None:
        """The transaction ended (committed or rolled back): what was read is stale."""
        self._view = None

    # -- StateStore ---------------------------------------------------------------------------

    def prepare(self, probes: Sequence[Probe | None]) -> None:
        """Embedded: load the batch's view at the log's current end, outside the lock."""
        self._prepared = None
        if self._events.reads_log and self._view is None:
            end = self._events.end()
            if self.mark().get(0, 1) == end:  # nothing to catch up
                view = self._new_view()
                self._load(view, probes)
                self._prepared = (probes, end, view)

    def repeats(self, probes: Sequence[Probe | None]) -> list[Outcome] | None:
        """Embedded: decided on the view :meth:`prepare` read from committed rows (a stored
        event stays as it is, so no lock is needed); the view is then dropped."""
        prepared = self._prepared
        if prepared is None or prepared[0] is not probes:
            return None
        outcomes = repeats_only(prepared[2], probes)
        if outcomes is not None:
            self._prepared = None
        return outcomes

    def read_ahead(self) -> Mapping[tuple[str, bytes], bytes]:
        prepared = self._prepared
        return {} if prepared is None else prepared[2].submitted_digests

    def view(self, probes: Sequence[Probe | None]) -> LedgerState:
        prepared, self._prepared = self._prepared, None
        if self._view is None and prepared is not None:
            loaded_for, end, view = prepared
            # Valid if nothing was appended since it was read (a batch's own appends come later).
            if loaded_for is probes and self._events.end() == end and self.mark().get(0, 1) == end:
                self._view = view
                return view
        view = self._open()
        self._load(view, probes)
        return view

    @property
    def folds(self) -> bool:
        """Embedded: False (each transaction reads what it lacks from the ledger's own tables,
        which every append keeps current; a view read before the lock is read again if another
        writer appended meanwhile: :meth:`view`); standalone: True."""
        return not self._events.reads_log

    def fold(self, event: LedgerEvent) -> None:
        """Embedded: nothing; each transaction reads what the store lacks from the ledger
        itself (normally nothing: every append updates it). Standalone: kept for the next view."""
        if not self._events.reads_log:
            self._pending.append(event)

    def head(self, org_id: str) -> ChainHead:
        return self._events.head(org_id) or ChainHead(0, GENESIS_HASH)

    def mark(self) -> Mark:
        rows = self._db.execute("SELECT partition, next_position FROM sequencer_position")
        return dict(rows.fetchall())

    def advance(self, mark: Mark) -> None:
        """Nothing: the store records its position with what it saves."""

    def forget(self) -> None:
        self._view = self._prepared = None
        self._pending.clear()
        self.rolled_back()

    def committed(self) -> None:
        """The transaction committed: keep what it left, if it saved a view (a transaction that
        saved none changed no state, and :attr:`_kept` stands as it was)."""
        if self._committing is not None:
            self._kept, self._committing = self._committing, None

    def rolled_back(self) -> None:
        """The transaction failed: its view may have changed the objects kept; drop them."""
        self._kept = self._committing = None

    def _kept_at(self, end: int) -> "_Kept | None":
        """:attr:`_kept` if the log still ends at ``end`` where it was kept, else None (and
        dropped)."""
        if self._kept is not None and self._kept.end != end:
            self._kept = None
        return self._kept

    # -- storing ----------------------------------------------------------------------------

    def record(self, events: Sequence[Accepted | LedgerEvent], mark: Mark) -> None:
        """Save the state after ``events`` (folding those the view has not seen) and ``mark``
        as the position it reflects, in the caller's transaction."""
        view = self._open()
        first = mark.get(0, 0) - len(events)  # the log's positions of ``events`` (embedded)
        submitted: list[tuple[int, bytes | bytearray]] = []
        applied = view.applied
        for at, item in enumerate(events, start=first):
            if isinstance(item, Accepted):
                record = item.record
                if item.submitted is not None:
                    # As a bytearray: sqlite3 binds it as the same BLOB, but a bytes parameter
                    # first goes through its adapter lookup (a failed ``__conform__`` lookup
                    # that formats an AttributeError: ~3k instructions per row).
                    submitted.append((at, bytearray(item.submitted)))
                key = item.key or bytes.fromhex(record["event_id"].replace("-", ""))
                if (record["org_id"], key) not in applied:  # the view decided it: folded
                    view.apply_record(record, key, item.digest, item.submitted)
            else:
                record = vars(item)
                key = bytes.fromhex(record["event_id"].replace("-", ""))
                if (record["org_id"], key) not in applied:
                    view.apply_record(record, key, self._digest(record))
        self._save(view, mark, submitted)
        if self._events.reads_log:
            kept = self._kept if self._kept is not None and self._kept.end == first else None
            if kept is None or len(kept) > KEPT_MAX:
                kept = _Kept(0)
            kept.take(view)
            kept.end = mark.get(0, 0)
            self._kept, self._committing = None, kept  # kept again once this commits
        self._view = None

    def note(self, values: Mapping[str, int]) -> None:
        """Standalone: keep ``values`` beside the state, in the caller's transaction (its
        owner's own progress, saved and lost together with the state)."""
        self._db.executemany(
            "INSERT OR REPLACE INTO sequencer_notes VALUES (?, ?)", sorted(values.items())
        )

    def notes(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT name, value FROM sequencer_notes").fetchall())

    def _digest(self, record: dict[str, Any]) -> bytes:
        # The embedded store keeps no digest (it computes it from the stored event when asked),
        # and a view is dropped once saved: nothing reads this one.
        return b"" if self._events.reads_log else record_digest(record)

    def begin(self) -> None:
        """Before a transaction appends: bring the tables up to date with the log (embedded)."""
        self._open()

    def _open(self) -> _View:
        if self._view is None:
            if self._events.reads_log:
                self._catch_up()
            self._view = self._new_view()
            pending, self._pending = self._pending, []
            for event in pending:
                record = vars(event)
                org = self._view.orgs.get(event.org_id)
                if org is None or event.sequence > org.last_sequence:
                    key = bytes.fromhex(event.event_id.replace("-", ""))
                    self._view.apply_record(record, key, record_digest(record))
        return self._view

    def catch_up(self) -> None:
        """:meth:`_catch_up` now (the ledger's migration builds the tables with it)."""
        self._catch_up()

    def _catch_up(self) -> None:
        """Fold the ledger's events after the position the tables reflect (an upgraded file:
        all of them, once; later, only what a writer that did not update them appended)."""
        mark = self.mark()
        position, end = mark.get(0, 1), self._events.end()
        if position >= end:
            if not mark:  # a new file: it reflects the (empty) ledger
                self._save(self._new_view(), {0: end}, [])
            return
        view = self._new_view()
        for folded, (at, record) in enumerate(self._events.after(position), start=1):
            key = bytes.fromhex(record["event_id"].replace("-", ""))
            view.apply_record(record, key, b"")  # keeps no digest (see _digest)
            if folded % _CATCH_UP_CHUNK == 0:  # bounded memory, whatever the ledger's size
                self._save(view, {0: at + 1}, [])
                view = self._new_view()
        self._save(view, {0: end}, [])

    def _new_view(self) -> _View:
        view = _View()
        # Its maps reach the view through a weak reference. A view that held itself would be a
        # cycle, and a dropped one (each batch drops its view, with all the batch read) would
        # wait for Python's cyclic collector, which then traverses all of it after every batch
        # (~10 % of a submission's CPU); without a cycle it is freed as it is dropped.
        this = cast(_View, weakref.proxy(view))
        view.orgs = _Cached(lambda org_id: self._read_org(this, org_id))
        view.known = _Cached(lambda key: self._read_known(this, key))
        view.sources = _Sources(
            lambda key: self._read_source(this, key), self._events.implies_sources, view.derived
        )
        return view

    def _load(self, view: _View, probes: Sequence[Probe | None]) -> None:
        """Read what ``probes`` name in bulk: their events (by id), then, for those that are
        not byte-identical repeats of a stored event, the sources of those not stored (a stored
        id decides a repeat before its source is looked at) and the key results they name."""
        keys: dict[str, dict[str, bytes]] = {}  # org -> event id text -> its 16 bytes
        known, stored, derived_ids = view.known, view.sources, view.derived
        assert isinstance(known, _Cached)  # a view's maps are
        assert isinstance(stored, _Cached)
        has = dict.__contains__
        holds = bool(dict.__len__(known))  # a new view (the usual case) holds no id yet
        org_id, mine = None, {}  # the last probe's org and its ids (a batch is mostly one org)
        for probed in probes:
            if probed is None or (named_org := probed.org_id) is None:
                continue
            if named_org != org_id:
                org_id = named_org
                mine = keys.get(org_id) or keys.setdefault(org_id, {})
            key = probed.event_key
            if key is not None and not (holds and has(known, (org_id, key))):
                mine[probed.event_id or event_id_text(key)] = key
            derived = probed.derived_key
            if derived is not None and not (holds and has(known, (org_id, derived))):
                mine[event_id_text(derived)] = derived
        repeats, applied = view.submitted_digests, view.applied
        known_absent = known._absent
        note_absent = known_absent.add
        for org_id, wanted in keys.items():
            found = view.where[org_id] = self._events.find(org_id, wanted)
            if len(found) == len(wanted):  # every id stored (a rerun): none to note as absent
                for key, (_, submitted) in found.items():
                    if submitted is not None:
                        repeats.setdefault((org_id, key), submitted)
                continue
            for key in wanted.values():
                hit = found.get(key)
                if hit is not None:
                    if hit[1] is not None:
                        repeats.setdefault((org_id, key), hit[1])
                elif (org_id, key) not in applied:
                    note_absent((org_id, key))  # known.loaded(..., None), without a call each
        sources: dict[str, set[tuple[str, str]]] = {}
        named: dict[str, set[str]] = {}
        for probed in probes:
            if probed is None or (org_id := probed.org_id) is None:
                continue
            key = probed.event_key
            if key is not None:
                submitted = probed.submitted
                if submitted is not None and repeats.get((org_id, key)) == submitted:
                    continue  # a byte-identical repeat: decided without its source or the rules
            if probed.source is not None:  # the id its source's id derives: computed already
                derived = probed.derived_key or key
                assert derived is not None  # a probe with a source derives its id
                derived_ids[probed.source] = derived
                if (
                    key is not None
                    and (org_id, key) in known_absent
                    and not has(known, (org_id, key))
                ):
                    sources.setdefault(org_id, set()).add(probed.source[1:])  # known.absent
            data = probed.document.get("data")
            if type(data) is dict and type(key_result_id := data.get("key_result_id")) is str:
                named.setdefault(org_id, set()).add(key_result_id)
        implies_sources = self._events.implies_sources
        note_no_source = stored._absent.add
        for org_id, pairs in sources.items():
            found_sources = self._sources(org_id, pairs)
            for source, source_event_id in pairs:
                source_key = (org_id, source, source_event_id)
                if has(stored, source_key):
                    continue
                first = found_sources.get((source, source_event_id))
                if first is not None:
                    stored.loaded(source_key, first)
                elif not implies_sources or (
                    (derived_key := (org_id, derived_ids[source_key])) in known_absent
                    and not has(known, derived_key)  # known.absent, without a call
                ):
                    note_no_source(source_key)  # stored.loaded(source_key, None)
        self._load_key_results(view, named)

    def _load_key_results(self, view: _View, named: dict[str, set[str]]) -> None:
        """Read the key results the submissions name (``data.key_result_id``, a hint: a wrong
        one costs a row) and their objectives, a query per org and table, instead of a query
        per key result when the rules first look at it."""
        kept = self._kept_at(self._events.end()) if self._kept is not None and named else None
        for org_id, ids in named.items():
            org = view.orgs[org_id]  # read now if not yet: the rules will look at it
            key_results, objectives = org.key_results, org.objectives
            if not isinstance(key_results, _Cached) or not isinstance(objectives, _Cached):
                continue
            found: dict[str, KeyResultState] = {}
            unread = [id_ for id_ in ids if key_results.unread(id_)]
            if kept is not None:  # what the last commit left: the rows as they are
                kept_key_results, unread, missing = kept.key_results, [], unread
                for id_ in missing:
                    held = kept_key_results.get((org_id, id_))
                    if held is None:
                        unread.append(id_)
                    else:
                        found[id_] = held
            for id_, objective_id, kind, start, active in self._rows(
                "SELECT key_result_id, objective_id, kind, start, active FROM sequencer_key_results"
                " WHERE org_id = ? AND key_result_id IN",
                org_id,
                unread,
                into=key_results,
            ):
                found[id_] = KeyResultState(objective_id, kind, start, bool(active))
            for id_, value in found.items():
                key_results.loaded(id_, value)
            named_objectives = {k.objective_id for k in found.values()}
            unread = [id_ for id_ in named_objectives if objectives.unread(id_)]
            if kept is not None:
                kept_objectives, missing, unread = kept.objectives, unread, []
                for id_ in missing:
                    objective = kept_objectives.get((org_id, id_))
                    if objective is None:
                        unread.append(id_)
                    else:
                        objectives.loaded(id_, objective)
            for id_, status, period_id, parent_id in self._rows(
                "SELECT objective_id, status, period_id, parent_id FROM sequencer_objectives"
                " WHERE org_id = ? AND objective_id IN",
                org_id,
                unread,
                into=objectives,
            ):
                objectives.loaded(id_, ObjectiveState(status, period_id, parent_id))

    def _rows(
        self, query: str, org_id: str, ids: list[str], into: "_Cached[str, Any]"
    ) -> list[tuple[Any, ...]]:
        """The rows of ``query (ids...)`` for one org, read in chunks; each id without a row
        is noted as absent in ``into`` (the caller notes the others)."""
        found: list[tuple[Any, ...]] = []
        if into.unreadable():
            return found
        for chunk in _chunks(sorted(ids)):
            rows = self._db.execute(f"{query} ({_marks(len(chunk))})", (org_id, *chunk)).fetchall()
            found.extend(rows)
            seen = {row[0] for row in rows}
            for id_ in chunk:
                if id_ not in seen:
                    into.loaded(id_, None)
        return found

    def _sources(
        self, org_id: str, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], bytes]:
        found: dict[tuple[str, str], bytes] = {}
        if self._one("SELECT 1 FROM sequencer_sources WHERE org_id = ? LIMIT 1", org_id) is None:
            return found  # the common case: every event of the org has the id its source's derives
        pairs = sorted(wanted)  # (only now: sorting a batch's pairs was ~5k instructions each)
        # One search of the primary key per pair: the wanted pairs joined to the table
        # (``CROSS JOIN`` keeps them outside). SQLite plans ``(source, source_event_id) IN
        # (VALUES ...)`` as a scan of every row of the org, a cost that grew with the ledger (a
        # Kafka state file keeps a row per event: ~190 ms per 200 pairs at 400,000 rows,
        # timed by hand).
        for chunk in _chunks(pairs, _IN_LIST // 2):
            rows = self._db.execute(
                "WITH wanted(source, source_event_id) AS"
                f" (VALUES {','.join(['(?, ?)'] * len(chunk))})"
                " SELECT s.source, s.source_event_id, s.event_id FROM wanted w"
                " CROSS JOIN sequencer_sources s ON s.org_id = ? AND s.source = w.source"
                " AND s.source_event_id = w.source_event_id",
                (*(part for pair in chunk for part in pair), org_id),
            )
            for source, source_event_id, event_id in rows:
                found[(source, source_event_id)] = event_id
        return found

    # -- reading one entity -------------------------------------------------------------------

    def _one(self, query: str, *params: Any) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(query, params).fetchone()
        return row

    def _flag(self, org_id: str, kind: str, id_: str) -> bool | None:
        row = self._one(
            "SELECT flag FROM sequencer_flags WHERE org_id = ? AND kind = ? AND id = ?",
            org_id,
            kind,
            id_,
        )
        return None if row is None else bool(row[0])

    def _read_org(self, view: _View, org_id: str) -> OrgState:
        head = self._events.head(org_id)
        if head is None:  # no event yet: nothing stored for it
            org = OrgState(
                swot=_Cached(None),
                competitors=_CachedSet(None),
                themes=_Cached(None),
                units=_Cached(None),
                periods=_Cached(None),
                objectives=_Cached(None),
                links=_CachedSet(None),
                key_results=_Cached(None),
                check_ins=_Cached(None),
            )
        else:
            org = OrgState(
                head.sequence,
                head.hash,
                bool(self._flag(org_id, "strategy", "")),
                swot=_Cached(lambda id_: self._flag(org_id, "swot", id_)),
                competitors=_CachedSet(
                    lambda id_: self._flag(org_id, "competitor", id_) is not None
                ),
                themes=_Cached(lambda id_: self._flag(org_id, "theme", id_)),
                units=_Cached(lambda id_: self._flag(org_id, "unit", id_)),
                periods=_Cached(lambda id_: self._flag(org_id, "period", id_)),
                objectives=_Cached(
                    lambda id_: self._objective(org_id, id_),
                    lambda o: (o.status, o.period_id, o.parent_id),
                ),
                links=_CachedSet(lambda link: self._link(org_id, link)),
                key_results=_Cached(
                    lambda id_: self._key_result(org_id, id_),
                    lambda k: (k.objective_id, k.kind, k.start, k.active),
                ),
                check_ins=_Cached(lambda key: self._check_in(org_id, key), lambda c: c.retracted),
            )
        view.read_orgs[org_id] = (org.last_sequence, org.last_hash, org.strategy_defined)
        return org

    def _objective(self, org_id: str, objective_id: str) -> ObjectiveState | None:
        row = self._one(
            "SELECT status, period_id, parent_id FROM sequencer_objectives"
            " WHERE org_id = ? AND objective_id = ?",
            org_id,
            objective_id,
        )
        return None if row is None else ObjectiveState(*row)

    def _key_result(self, org_id: str, key_result_id: str) -> KeyResultState | None:
        row = self._one(
            "SELECT objective_id, kind, start, active FROM sequencer_key_results"
            " WHERE org_id = ? AND key_result_id = ?",
            org_id,
            key_result_id,
        )
        return None if row is None else KeyResultState(row[0], row[1], row[2], bool(row[3]))

    def _link(self, org_id: str, link: tuple[str, str, str]) -> bool:
        row = self._one(
            "SELECT 1 FROM sequencer_links WHERE org_id = ? AND objective_id = ?"
            " AND linked_objective_id = ? AND relation = ?",
            org_id,
            *link,
        )
        return row is not None

    def _check_in(self, org_id: str, key: bytes) -> CheckInState | None:
        key_result_id = self._events.check_in(org_id, key)
        if key_result_id is None:
            return None
        retracted = self._one(
            "SELECT 1 FROM sequencer_retracted WHERE org_id = ? AND event_id = ?", org_id, key
        )
        return CheckInState(key_result_id, retracted is not None)

    def _read_known(self, view: _View, key: tuple[str, bytes]) -> bytes | None:
        hit = view.where.get(key[0], {}).get(key[1])
        return self._events.digest(*key, None if hit is None else hit[0])

    def _read_source(self, view: _View, key: tuple[str, str, str]) -> bytes | None:
        org_id, source, source_event_id = key
        row = self._one(
            "SELECT event_id FROM sequencer_sources"
            " WHERE org_id = ? AND source = ? AND source_event_id = ?",
            *key,
        )
        if row is not None:
            first: bytes = row[0]
            return first
        if not self._events.implies_sources:
            return None
        # Not stored: the event whose id this source's id derives is the first, if it carries it.
        candidate = (org_id, derive_event_key(*key))
        known = view.known
        if isinstance(known, _Cached) and known.absent(candidate):
            return None
        carried = view.carried.get(candidate) or self._events.carried(*candidate)
        return candidate[1] if carried == (source, source_event_id) else None

    # -- writing ------------------------------------------------------------------------------

    def _save(
        self, view: _View, mark: Mark, submitted: list[tuple[int, bytes | bytearray]]
    ) -> None:
        flags: list[tuple[str, str, str, int]] = []
        objectives: list[tuple[str, str, str, str, str | None]] = []
        key_results: list[tuple[str, str, str, str, float, int]] = []
        links_added: list[tuple[str, str, str, str]] = []
        links_removed: list[tuple[str, str, str, str]] = []
        retracted: list[tuple[str, bytes]] = []
        heads: list[tuple[str, int, str]] = []
        for org_id, org in dict.items(view.orgs):
            sequence, hash_, strategy = view.read_orgs[org_id]
            if (org.last_sequence, org.last_hash) != (sequence, hash_):
                heads.append((org_id, org.last_sequence, org.last_hash))
            if org.strategy_defined != strategy:
                flags.append((org_id, "strategy", "", int(org.strategy_defined)))
            for kind, attribute in _FLAG_KINDS:
                table: dict[str, bool] = getattr(org, attribute)
                flags.extend((org_id, kind, id_, int(flag)) for id_, flag in _changes(table))
            flags.extend((org_id, "competitor", id_, 1) for id_ in _added(org.competitors))
            objectives.extend(
                (org_id, id_, o.status, o.period_id, o.parent_id)
                for id_, o in _changes(org.objectives)
            )
            key_results.extend(
                (org_id, id_, k.objective_id, k.kind, k.start, int(k.active))
                for id_, k in _changes(org.key_results)
            )
            links_added.extend((org_id, *link) for link in _added(org.links))
            links_removed.extend((org_id, *link) for link in _removed(org.links))
            # Only a retraction writes a row (a check-in itself is its event's row); one read
            # as retracted already is written again, which INSERT OR IGNORE leaves as it is.
            # So no check-in is compared with what was read (a batch's new ones are most).
            retracted.extend((org_id, key) for key, c in dict.items(org.check_ins) if c.retracted)
        db = self._db
        db.executemany("INSERT OR REPLACE INTO sequencer_flags VALUES (?, ?, ?, ?)", flags)
        db.executemany(
            "INSERT OR REPLACE INTO sequencer_objectives VALUES (?, ?, ?, ?, ?)", objectives
        )
        db.executemany(
            "INSERT OR REPLACE INTO sequencer_key_results VALUES (?, ?, ?, ?, ?, ?)", key_results
        )
        db.executemany("INSERT OR IGNORE INTO sequencer_links VALUES (?, ?, ?, ?)", links_added)
        db.executemany(
            "DELETE FROM sequencer_links WHERE org_id = ? AND objective_id = ?"
            " AND linked_objective_id = ? AND relation = ?",
            links_removed,
        )
        db.executemany("INSERT OR IGNORE INTO sequencer_retracted VALUES (?, ?)", retracted)
        db.executemany(
            "INSERT INTO sequencer_sources VALUES (?, ?, ?, ?)",
            [
                (*key, first)
                for key, first in _changes(view.sources)
                if not (self._events.implies_sources and first == _derived(view, key))
            ],
        )
        self._events.save(view, heads, submitted)
        db.executemany(
            "INSERT OR REPLACE INTO sequencer_position VALUES (?, ?)", sorted(mark.items())
        )


def _derived(view: _View, key: tuple[str, str, str]) -> bytes:
    return view.derived.get(key) or derive_event_key(*key)


def _added(items: set[K]) -> Iterable[K]:
    return items.added() if isinstance(items, _CachedSet) else items


def _removed(items: set[K]) -> Iterable[K]:
    return items.removed() if isinstance(items, _CachedSet) else ()
