"""`rebuild` beside a running worker (Kafka): replay into a fresh database, compare with live.

The live projections are read first (their checkpoints), so the rebuild replays exactly the
prefix they cover: each org up to its live checkpoint, each lane of the rejections up to its
own. Both are then fingerprinted within that prefix, so events the worker projects meanwhile
change nothing.
The fresh database is a temporary chDB path in this process (the worker holds the live one:
chDB allows one path per process, but other processes may open other paths), or, with a
ClickHouse server, ``<database>_rebuild_<time>`` on that server. It is dropped unless kept.
A store that fails before the comparison ends (down, or refusing a statement) ends the rebuild
with one error naming it (the live projections or the rebuild) and saying what became of the
fresh database: never a comparison of what was read so far (:func:`naming_the_store`).
"""

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events.collector import collector_paused
from events.log import EventLog
from okr_ledger.projection_compare import (
    Limits,
    describe_difference,
    differing,
    differing_current,
    failure_cause,
    fingerprint,
    naming_the_store,
    row_hash,
)
from okr_ledger.served_store import open_served_store
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_event_log
from processors import tables as t
from processors.projector import Projector
from processors.rejections import project_rejections
from processors.runner import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_REJECTION_BATCH_SIZE,
    batched,
    rejection_pages,
)
from projections.client import parse_url
from projections.store import ProjectionStore
from schemas.errors import OkrLedgerError

ProgressBar = Callable[[int], AbstractContextManager[Callable[[int], None]]]
"""Given the events to replay, a context yielding ``advance(n)``."""


@dataclass(slots=True)
class Fresh:
    """The fresh projection database and where it is (to tell the user when it is kept)."""

    store: ProjectionStore
    where: str
    left: str = ""
    """Once the work succeeded and the store is closed: the database left on the server
    because its drop failed (what to drop), else empty."""


@dataclass(slots=True)
class LiveComparison:
    """What a rebuild beside the live projections found."""

    events: int
    limits: Limits
    differences: list[str] = field(default_factory=list)
    not_projected: list[str] = field(default_factory=list)
    """Orgs in the ledger the worker has not projected yet (not compared)."""
    kept: str | None = None
    left: str = ""
    """The fresh database left on the server (its drop failed), and how to drop it."""


@contextmanager
def fresh_store(settings: Settings, keep: bool) -> Iterator[Fresh]:
    """A new, migrated projection database beside the live one; dropped afterwards unless kept.

    An error of this project that ends the work (a store down, a statement refused) leaves
    with what became of the database added to its message: kept (where), or left on the
    server because the drop failed too (which database). A drop that fails after work that
    succeeded is :attr:`Fresh.left`, said beside the comparison. The temporary chDB directory
    is removed in any case unless kept."""
    target = parse_url(settings.resolved_clickhouse_url)
    path = None
    if target.embedded:
        path = tempfile.mkdtemp(prefix="okr-rebuild-")
        try:
            store = ProjectionStore.open(f"chdb://{path}", target.database)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        where = f"chdb://{path}"
    else:
        database = f"{target.database}_rebuild_{datetime.now(UTC):%Y%m%d%H%M%S%f}"
        store = ProjectionStore.open(settings.resolved_clickhouse_url, database)
        where = store.description
    fresh = Fresh(store, where)
    try:
        yield fresh
    except OkrLedgerError as error:
        left = _discard(store, path, keep, where)
        if left:  # str(error) is its first argument: the message, with the database's fate
            error.args = (f"{error} ({left})", *error.args[1:])
        raise
    except BaseException:
        _discard(store, path, keep, where)
        raise
    else:
        left = _discard(store, path, keep, where)
        if not keep:  # compared: a drop that failed is said beside the comparison
            fresh.left = left


def _discard(store: ProjectionStore, path: str | None, keep: bool, where: str) -> str:
    """Close the fresh store and drop its database (or remove its chDB directory) unless
    ``keep``; what became of it when the user must know: kept, or left (the drop failed)."""
    left = ""
    try:
        if not keep and path is None:
            store.client.command(f"DROP DATABASE IF EXISTS {store.database}")
    except Exception as error:  # the server down (or refusing): say what is left, and where
        left = (
            f"the rebuild's database is left on the server, {where}: its drop failed "
            f"({failure_cause(error)}); drop it with `DROP DATABASE {store.database}`"
        )
    finally:
        store.close()
        if not keep and path is not None:
            shutil.rmtree(path, ignore_errors=True)
    return f"kept the rebuild: {where}" if keep else left


def live_limits(live: ProjectionStore, log: EventLog) -> tuple[Limits, list[str], list[str]]:
    """The prefix to compare: the live checkpoints, cut at the ledger's heads.

    Also returns problems (a live checkpoint beyond the ledger) and the orgs not projected yet.
    """
    ledger = live.positions()
    rejections = live.positions(t.REJECTION_STREAM)
    heads = {org: head.sequence for org, head in log.heads().items()}
    problems = [
        f"{org}: the live projections are at sequence {last}, the ledger at {heads.get(org, 0)}"
        for org, last in sorted(ledger.items())
        if last > heads.get(org, 0)
    ]
    lasts: list[int] = []
    rejected = 0
    for lane in log.rejection_lanes():
        upto, recorded = rejections.get(lane, 0), 0
        for page in rejection_pages(log, 0, DEFAULT_REJECTION_BATCH_SIZE, upto=upto, lane=lane):
            recorded = page[-1][0]
            rejected += len(page)
        if recorded < upto:
            problems.append(
                f"rejections (lane {lane!r}): the live projections are at position {upto}, "
                f"the log's last is {recorded}"
            )
        lasts.append(recorded)
    limits = Limits(
        {org: min(last, heads.get(org, 0)) for org, last in ledger.items()}, tuple(lasts), rejected
    )
    return limits, problems, sorted(heads.keys() - ledger.keys())


def replay(
    log: EventLog, store: ProjectionStore, limits: Limits, advance: Callable[[int], None]
) -> int:
    """Project the ledger (chain rule: the log's reading) and rejections up to ``limits``."""
    projector = Projector()
    events = (
        r
        for r in log.read_records()  # one pass over the topic; orgs interleave, each in order
        if r["sequence"] <= limits.ledger.get(r["org_id"], 0)
    )
    replayed = 0
    with collector_paused():
        for batch in batched(events, DEFAULT_BATCH_SIZE):
            store.insert(projector.project_records(batch))
            replayed += len(batch)
            advance(len(batch))
        for lane, last in zip(log.rejection_lanes(), limits.rejections, strict=False):
            for page in rejection_pages(log, 0, DEFAULT_REJECTION_BATCH_SIZE, upto=last, lane=lane):
                store.insert(project_rejections(page, lane=lane))
    return replayed


def rebuild_beside_live(settings: Settings, keep: bool, bar: ProgressBar) -> LiveComparison:
    """Replay the ledger's live prefix into a fresh database and compare it with the live one."""
    with (
        open_served_store(settings) as live,
        fresh_store(settings, keep) as fresh,
        naming_the_store({"the live projections": live, "the rebuild": fresh.store}),
    ):
        log = open_event_log(settings, create=False, read_only=True)
        try:
            limits, problems, not_projected = live_limits(live, log)
            with bar(limits.events) as advance:
                events = replay(log, fresh.store, limits, advance)
        finally:
            log.close()
        hash_ = row_hash(live, fresh.store)
        tables = differing(
            fingerprint(live, limits, hash_), fingerprint(fresh.store, limits, hash_)
        )
        details = [describe_difference(live, fresh.store, table, limits, hash_) for table in tables]
        details += differing_current(live, fresh.store, limits, hash_)
        comparison = LiveComparison(
            events, limits, problems + details, not_projected, fresh.where if keep else None
        )
    comparison.left = fresh.left  # once the fresh database is dropped (or left)
    return comparison
