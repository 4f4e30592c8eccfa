"""What a kept read sends to the store's process (``okr_ledger/kept_projections.py``): the
store's checkpoints read once and known until a catch-up writes them, an answer's statements
at once. :class:`KeptProjections` in this process, its store in a real child process, on a
real ledger."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.ledger import Ledger
from events.outcomes import Accepted, Rejection
from events.sqlite_log import SqliteEventLog
from okr_ledger.embedded_runtime import rebuild_in_place
from okr_ledger.kept_projections import KeptProjections
from okr_ledger.runtime import no_progress
from okr_ledger.settings import Settings
from okr_ledger.store_host import STORE_URL_FILE, PublishedStore, hosted
from processors import tables as t
from projections import queries
from projections.store import READERS, ProjectionStore
from tests.http.conftest import demo_ledger
from tests.http.support import check_in


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[KeptProjections]:
    demo_ledger(tmp_path / "data")
    kept = KeptProjections(Settings(data_dir=tmp_path / "data"), idle_s=60)
    try:
        yield kept
    finally:
        kept.close()


def _submit(kept: KeptProjections, line: bytes) -> object:
    log = SqliteEventLog(kept.settings.data_dir / "ledger.db")
    try:
        (outcome,) = Ledger(log).submit_many([(line, 1)])
    finally:
        log.close()
    return outcome


def _nps(store: ProjectionStore) -> float:
    found = queries.progress(store, "northwind", queries.Moment(), 3)
    (nps,) = [kr for kr in found.key_results if kr["key_result_id"] == "nps"]
    value: float = nps["value"]
    return value


def _counting(store: ProjectionStore) -> list[int]:
    """Counts the statements that read the store's checkpoints (a spy: each still runs)."""
    counted = [0]
    read: Callable[[], Any] = store.checkpoints

    def checkpoints() -> dict[str, dict[str, int]]:
        counted[0] += 1
        found: dict[str, dict[str, int]] = read()
        return found

    store.checkpoints = checkpoints  # type: ignore[method-assign]
    return counted


def test_the_checkpoints_are_read_once_and_again_only_after_a_catch_up(
    kept: KeptProjections,
) -> None:
    """Reads with nothing new send no statement for their check; an event or a rejection
    appended is still projected before the next answer, and the checkpoints it wrote are
    read once more."""
    store = kept.read(lambda store: store)  # the demo projected
    assert store.served_chdb  # this reader's own store's process: at once
    kept.read(lambda store: store)  # the checkpoints that catch-up wrote, read
    counted = _counting(store)
    before = kept.read(_nps)
    assert kept.read(_nps) == before
    assert counted == [0]

    assert isinstance(_submit(kept, orjson.dumps(check_in("nps", before + 1))), Accepted)
    assert kept.read(_nps) == before + 1  # projected first, from the checkpoints known
    assert counted == [0]
    assert kept.read(_nps) == before + 1
    assert counted == [1]  # written by that catch-up: read again, once
    assert kept.read(_nps) == before + 1
    assert counted == [1]

    rejected_before = type(store).checkpoints(store).get(t.REJECTION_STREAM, {})
    assert isinstance(_submit(kept, b"{not json"), Rejection)
    kept.read(_nps)
    assert counted == [1]
    rejected = type(store).checkpoints(store)[t.REJECTION_STREAM]
    assert sum(rejected.values()) == sum(rejected_before.values()) + 1  # projected
    kept.read(_nps)
    kept.read(_nps)
    assert counted == [2]


def test_an_answers_statements_go_at_once_on_connections_of_their_own(
    kept: KeptProjections,
) -> None:
    """The store's process runs them at once: the answer is the one they give in turn."""
    coverage = kept.read(lambda store: queries.coverage(store, "northwind", queries.Moment()))
    store = kept.read(lambda store: store)
    assert len(store.readers) == READERS  # three statements: two on connections more
    store.served_chdb = False
    assert queries.coverage(store, "northwind", queries.Moment()) == coverage


def test_a_shared_reader_sends_its_statements_in_turn(tmp_path: Path) -> None:
    """``shared`` (``serve --workers N``): the store is opened for each read, where a
    connection more per statement would cost more than it saves."""
    demo_ledger(tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data")
    with hosted(settings) as environment:  # the supervisor's
        published = PublishedStore(settings, Path(environment[STORE_URL_FILE]))
        kept = KeptProjections(settings, idle_s=0, shared=True, host=published)
        try:
            assert kept.read(lambda store: store.served_chdb) is False
        finally:
            kept.close()


def test_shared_readers_keep_their_clients_and_each_sees_what_the_other_projected(
    tmp_path: Path,
) -> None:
    """Two workers of ``serve --workers N`` (two shared readers of the supervisor's store's
    process) keep their clients between reads, and run an answer's statements at once; each
    catches up from the store's checkpoints as they are now, and with a projector had anew,
    so that what the other projected is neither projected twice nor missed (a correction
    projected by the one that did not project what it corrects too); the rows equal a
    rebuild's."""
    demo_ledger(tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data")
    with hosted(settings) as environment:
        path = Path(environment[STORE_URL_FILE])
        first, second = (
            KeptProjections(settings, idle_s=60, shared=True, host=PublishedStore(settings, path))
            for _ in range(2)
        )
        try:
            start = first.read(_nps)
            store = first.read(lambda store: store)
            assert store.served_chdb
            assert second.read(_nps) == start
            for n, reader in enumerate((first, second, first), 1):
                value = start + n
                line = orjson.dumps(check_in("nps", value, source_event_id=f"shared{n}"))
                assert isinstance(_submit(first, line), Accepted)
                assert reader.read(_nps) == value
                assert (second if reader is first else first).read(_nps) == value
            assert first.read(lambda store: store) is store  # the same client all along
            assert first.is_open
            assert second.is_open
            ((rows, distinct),) = store.rows(
                "SELECT count(), uniqExact(org_id, check_in_id, sequence) "
                f"FROM {{db}}.{t.CHECK_INS}"
            )
            assert rows == distinct  # none projected twice
            correction = {
                **check_in("nps", 40, source_event_id="fix1", type_name="CheckInCorrected"),
                "data": {"key_result_id": "nps", "corrects_source_event_id": "shared3",
                         "value": 40, "reason": "typo"},
            }  # fmt: skip
            assert isinstance(_submit(first, orjson.dumps(correction)), Accepted)
            assert second.read(_nps) == 40  # shared3 was projected by the first
            assert first.read(_nps) == 40
        finally:
            first.close()
            second.close()
    report = rebuild_in_place(settings, no_progress)
    assert report.differences == []
    assert report.compared
