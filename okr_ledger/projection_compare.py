"""The comparison `rebuild` makes: a fingerprint of every history table, optionally cut at per-org
sequences (and a rejection position per lane), so two stores compare over the same prefix; and of
every current-state table's latest row per entity (its answers): uncut after ``FINAL``, cut as
of the prefix's last sequence, entity by entity (:func:`differing_current`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from processors import tables as t
from projections.store import ProjectionStore
from schemas.errors import ProjectionError, ProjectionUnavailableError

HISTORY_TABLES = t.HISTORY
"""What is compared row for row. The checkpoints record where to resume, not an answer."""
CURRENT_KEYS = {t.KEY_RESULTS_NOW: "key_result_id", t.OBJECTIVES_NOW: "objective_id"}
"""Each current-state table's entity (with ``org_id``): its sort key, one answer each."""
Fingerprint = dict[str, tuple[int, int]]
"""Table -> (distinct rows, sum of their hashes)."""
ROW_HASH = "cityHash64(tuple(*))"
"""A row's hash, from its columns' values as stored (their types': NULL is not '', an array's
order counts), not from a text form of the row: half the time (4.5 -> 2.4 s for the tables of
1,000,000 events; ``benchmarks/projection_throughput.py`` prints both; a rebuild fingerprints
twice)."""
TEXT_ROW_HASH = "cityHash64(formatRow('TabSeparated', *))"
"""The row written as text, then hashed: for servers whose ``cityHash64`` refuses a tuple
holding a NULL (every history table has them)."""
TUPLE_HASH_SINCE = (25, 5)
"""The first ClickHouse release whose ``cityHash64`` takes a tuple with NULLs (PR 79008)."""


def row_hash(*stores: ProjectionStore) -> str:
    """The row hash that every one of ``stores``' servers can compute: stores compared with
    each other must hash alike (``rebuild --beside`` may compare a server's store with chDB's)."""
    for store in stores:
        (version,) = store.rows("SELECT version()")[0]
        if tuple(int(part) for part in str(version).split(".")[:2]) < TUPLE_HASH_SINCE:
            return TEXT_ROW_HASH
    return ROW_HASH


@dataclass(frozen=True, slots=True)
class Limits:
    """A prefix of the ledger: each org's last sequence, and the last rejection position of
    each lane of the rejection log, in the log's order of lanes (a rejection at position *n*
    is in lane (*n* - 1) mod the lane count: :class:`events.kafka_records.RejectionLanes`)."""

    ledger: dict[str, int] = field(default_factory=dict)
    rejections: tuple[int, ...] = ()
    rejected: int = 0
    """How many rejections the prefix holds."""

    @property
    def events(self) -> int:
        return sum(self.ledger.values())


def _rows(table: str, limits: Limits | None, hash_: str) -> tuple[str, dict[str, Any]]:
    """The distinct row hashes (``h``) of ``table``, within ``limits`` when given; its
    parameters. Distinct hashes, not ``DISTINCT *``: the same answer, without ClickHouse's
    slow path for whole rows (28 s instead of 0.06 s on 226,000 four-column rows)."""
    select = f"SELECT DISTINCT {hash_} AS h FROM {{db}}.{table}"
    if table in t.CURRENT:
        if limits is not None:  # cut, its rows are compared entity by entity
            raise ValueError(f"{table} is compared within limits by differing_current")
        return f"{select} FINAL", {}
    if limits is None:
        return select, {}
    if table == t.REJECTIONS:
        lasts = list(limits.rejections) or [0]
        last = "{lasts:Array(UInt64)}[(position - 1) % {lanes:UInt64} + 1]"
        return f"{select} WHERE position <= {last}", {"lasts": lasts, "lanes": len(lasts)}
    cut, parameters = _ledger_cut(limits)
    return f"{select} WHERE sequence <= {cut}", parameters


def _ledger_cut(limits: Limits) -> tuple[str, dict[str, Any]]:
    """The last sequence of a row's org within ``limits`` (0 for an org outside them)."""
    orgs = sorted(limits.ledger)
    cut = "transform(org_id, {orgs:Array(String)}, {lasts:Array(UInt64)}, toUInt64(0))"
    return cut, {"orgs": orgs, "lasts": [limits.ledger[o] for o in orgs]}


def fingerprint(
    store: ProjectionStore, limits: Limits | None = None, hash_: str | None = None
) -> Fingerprint:
    """(rows, hash) of every history table, duplicates collapsed, and uncut (no ``limits``) of
    every current-state table after ``FINAL``: equal answers, equal prints. Cut, the current
    state is compared entity by entity, between two stores (:func:`differing_current`).
    ``hash_``: the :func:`row_hash` of every store it is compared with (else ``store``'s)."""
    hash_ = hash_ or row_hash(store)
    result = {}
    for table in HISTORY_TABLES if limits is not None else (*HISTORY_TABLES, *t.CURRENT):
        select, parameters = _rows(table, limits, hash_)
        rows = store.rows(
            f"SELECT count(), sum(h) FROM ({select})", parameters, store.scan_settings()
        )
        count, digest = rows[0]
        result[table] = (int(count), int(digest or 0))
    return result


def current_rows(
    store: ProjectionStore, table: str, limits: Limits, hash_: str
) -> dict[tuple[str, str], tuple[int, bool]]:
    """Each entity of the current-state ``table``: the hash of its latest row within
    ``limits`` (0 if none), and whether it has a row beyond them, in one statement (one
    snapshot of the table's parts: a merge may drop the row at the cut once a newer one is
    there). Bounded by the entities, not the history."""
    cut, parameters = _ledger_cut(limits)
    key = CURRENT_KEYS[table]
    rows = store.rows(
        f"SELECT org_id, {key}, argMaxIf(h, sequence, sequence <= {cut}), "
        f"max(sequence) > {cut} FROM (SELECT org_id, {key}, sequence, {hash_} AS h "
        f"FROM {{db}}.{table}) GROUP BY org_id, {key}",
        parameters,
        store.scan_settings(),
    )
    return {(str(org), str(entity)): (int(h), bool(beyond)) for org, entity, h, beyond in rows}


def differing_current(
    live: ProjectionStore, rebuilt: ProjectionStore, limits: Limits, hash_: str | None = None
) -> list[str]:
    """Each current-state table whose entities' latest rows within ``limits`` differ between
    the two stores, described. An entity the live store changed again beyond the cut is left
    out: a merge may already have replaced its row at the cut (its history tables' rows within
    the cut are still compared)."""
    hash_ = hash_ or row_hash(live, rebuilt)
    found = []
    for table in t.CURRENT:
        was, now = (
            current_rows(live, table, limits, hash_),
            current_rows(rebuilt, table, limits, hash_),
        )
        moved = {k for k, (_h, beyond) in (*was.items(), *now.items()) if beyond}
        was_rows = {k: h for k, (h, _b) in was.items() if k not in moved}
        now_rows = {k: h for k, (h, _b) in now.items() if k not in moved}
        if was_rows != now_rows:
            keys = was_rows.keys() | now_rows.keys()
            differ = sum(was_rows.get(k) != now_rows.get(k) for k in keys)
            found.append(
                f"{table}: {differ} entities differ within the cut "
                f"({len(was_rows.keys() - now_rows.keys())} only in the live projections, "
                f"{len(now_rows.keys() - was_rows.keys())} only in the rebuild)"
            )
    return found


def differing(before: Fingerprint, after: Fingerprint) -> list[str]:
    """The tables whose fingerprints differ, sorted."""
    tables = after.keys() | before.keys()
    return sorted(table for table in tables if after.get(table) != before.get(table))


def row_hashes(
    store: ProjectionStore, table: str, limits: Limits | None = None, hash_: str | None = None
) -> set[int]:
    """The hash of each distinct row of ``table`` (within ``limits``): to count what differs."""
    select, parameters = _rows(table, limits, hash_ or row_hash(store))
    return {int(h) for (h,) in store.rows(select, parameters)}


def describe_difference(
    live: ProjectionStore,
    rebuilt: ProjectionStore,
    table: str,
    limits: Limits | None = None,
    hash_: str | None = None,
) -> str:
    """``table: N rows only in the live projections, M only in the rebuild``; ``hash_``: the
    two stores' :func:`row_hash`, if known."""
    hash_ = hash_ or row_hash(live, rebuilt)
    was, now = row_hashes(live, table, limits, hash_), row_hashes(rebuilt, table, limits, hash_)
    return (
        f"{table}: {len(was - now)} rows only in the live projections, "
        f"{len(now - was)} only in the rebuild"
    )


@contextmanager
def naming_the_store(stores: dict[str, ProjectionStore]) -> Iterator[None]:
    """A failure of one of ``stores`` (name -> store) raised again as the same error with one
    line that names the store, says whether it did not answer or refused a statement, and
    that nothing was compared."""
    try:
        yield
    except ProjectionError as error:
        name = next((n for n, s in stores.items() if s.description == error.store), None)
        if name is None or error.store is None:
            raise
        what = (
            f"did not answer ({failure_cause(error)})"
            if isinstance(error, ProjectionUnavailableError)
            else f"refused a statement: {error}"
        )
        named = type(error)(
            f"the rebuild was cut short, nothing compared: {name} ({error.store}) {what}"
        )
        named.store = error.store
        raise named from error


def failure_cause(error: BaseException) -> str:
    """The innermost cause of ``error`` that says something (``[Errno 111] Connection
    refused``), its first line: not the client's wrapping of it (a URL with every parameter)."""
    said = str(error).strip()
    seen = {id(error)}
    cause = error.__cause__ or error.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if str(cause).strip():
            said = str(cause).strip()
        cause = cause.__cause__ or cause.__context__
    return said.splitlines()[0] if said else type(error).__name__
