"""The embedded runner: checkpoints, restarts from snapshots, rejections, gaps."""

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from events.outcomes import RAW_LIMIT, Rejection
from events.sqlite_log import SqliteEventLog
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from processors.snapshots import SqliteSnapshots
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.projections.conftest import StoreFactory, assert_as_projected_afresh, project
from tests.projections.ledgers import LedgerBuilder, day, small


def test_a_restart_resumes_from_a_snapshot(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    store = open_store("resumed")
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    small(builder, 3)
    first = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots, snapshot_after=1)
    assert first.catch_up().events == 9
    for n in range(3, 6):
        builder.check_in("k", n, day(n))
    restarted = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots)
    done = restarted.catch_up()
    assert (done.events, done.replayed) == (3, 0)

    assert_as_projected_afresh(store, builder, open_store)


def test_a_snapshot_of_another_ledger_is_ignored(
    tmp_path: Path, builder: LedgerBuilder, store: ProjectionStore
) -> None:
    snapshots = SqliteSnapshots(tmp_path / "state.sqlite")
    other = LedgerBuilder(tmp_path / "other.db")
    try:
        small(other, 4, theme="other")  # the same org, other events: other hashes
        EmbeddedRunner(
            other.log, store, Projector(), snapshots=snapshots, snapshot_after=1
        ).catch_up()
    finally:
        other.close()
    small(builder, 4)
    store.drop_all()
    store.migrate()
    project(builder, store)
    builder.check_in("k", 9, day(9))
    done = EmbeddedRunner(builder.log, store, Projector(), snapshots=snapshots).catch_up()
    assert (done.events, done.replayed) == (1, 10)


def test_rejections_are_projected_once(builder: LedgerBuilder, store: ProjectionStore) -> None:
    small(builder, 1)
    builder.submit("CheckInRecorded", {"key_result_id": "nope", "value": 1, "confidence": 1},
                   day(1))  # fmt: skip
    runner = project(builder, store)
    builder.submit("ObjectiveCreated", {"objective_id": "x"}, day(2))
    assert runner.catch_up().rejections == 1
    rows = store.rows("SELECT position, reason_code, org_id FROM rejection_history")
    assert rows == [(1, "unknown_reference", "acme"), (2, "schema_violation", "acme")]
    assert runner.catch_up().rejections == 0


class PagedLog(SqliteEventLog):
    """The real SQLite log, noting every page of rejections read; whole reads are refused."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pages: list[tuple[int, int, int]] = []

    def rejections(self) -> Iterator[Rejection]:
        raise AssertionError("the runner read every rejection at once")

    def rejections_after(
        self, position: int, limit: int, *, lane: str
    ) -> list[tuple[int, Rejection]]:
        page = super().rejections_after(position, limit, lane=lane)
        self.pages.append((position, limit, len(page)))
        return page


def test_rejections_are_projected_in_bounded_pages_with_their_length_and_hash(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    big = b"x" * (3 * RAW_LIMIT)
    for line in (b"{", big, b"[]", b"{", b"nope"):
        builder.ledger.submit(line)
    log = PagedLog(builder.log.path)
    try:
        runner = EmbeddedRunner(log, store, Projector(), rejection_batch_size=2)
        assert runner.catch_up().rejections == 5
        assert [(p, n) for p, n, _ in log.pages] == [(0, 2), (2, 2), (4, 2)]
        builder.ledger.submit(b"late")
        assert runner.catch_up().rejections == 1
        assert log.pages[3:] == [(5, 2, 1)]
    finally:
        log.close()
    rows = store.rows(
        "SELECT position, reason_code, length(raw), raw_length, raw_sha256 "
        "FROM rejection_history ORDER BY position"
    )
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[1] == (2, "too_large", RAW_LIMIT, len(big), hashlib.sha256(big).hexdigest())
    assert rows[0][3:] == (None, None)


def test_a_gap_in_the_ledger_is_an_error(builder: LedgerBuilder) -> None:
    small(builder, 2)
    events = builder.events()
    projector = Projector()
    projector.project(events[:3])
    with pytest.raises(ProjectionError, match="follows 3"):
        projector.project(events[4:])


class FailingCommits:
    """The real store, whose ``fail_at``-th commit fails before inserting anything."""

    def __init__(self, store: ProjectionStore, fail_at: int) -> None:
        self.store = store
        self.fail_at = fail_at
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def commit(self, owners: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.commits += 1
        if self.commits == self.fail_at:
            raise ProjectionError("insert failed (as the test asks)")
        self.store.commit(owners=owners)


def test_a_failed_commit_stops_the_catch_up_and_the_next_one_completes(
    builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """The writer thread commits one batch while the next is projected: a failed commit stops
    the catch-up before any later one, so no checkpoint passes rows that were not inserted."""
    small(builder, 40)
    store = open_store("failing")
    sink = FailingCommits(store, fail_at=3)
    runner = EmbeddedRunner(builder.log, sink, Projector(), batch_size=5, commit_bytes=1)
    with pytest.raises(ProjectionError, match="insert failed"):
        runner.catch_up()
    position = store.positions()["acme"]
    assert 0 < position < builder.log.heads()["acme"].sequence  # committed up to before it
    EmbeddedRunner(builder.log, store, Projector()).catch_up()
    assert_as_projected_afresh(store, builder, open_store)
