"""A worker's commits (``ProjectionStore.commit`` with owners: the Kafka projector's) cut short
anywhere, taken over by a new owner in another process: the marks set ahead and renewed with
the checkpoints, the tables inserted at once, and the rejections lanes' checkpoints that ride
in the claimed checkpoints' statement."""

from pathlib import Path
from typing import Any

import pytest

import projections.store as store_module
from processors import tables as t
from processors.projector import Projector
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory
from tests.projections.ledgers import ORG, LedgerBuilder, day, emptied

KEY = t.owner_key(0)
Write = tuple[str, Any, Any]


def ledger(builder: LedgerBuilder, check_ins: int) -> list[Any]:
    builder.skeleton()
    builder.objective("o", theme_ids=["growth"])
    builder.key_result("k", "o")
    for n in range(check_ins):
        builder.check_in("k", 5 * n, day(n))
    return builder.events()


def twice(store: ProjectionStore) -> list[str]:
    """The history tables that hold a row twice."""
    query = "SELECT count() = uniqExact(formatRow('TSV', *)) FROM {db}.%s"
    return [table for table in t.HISTORY if store.rows(query % table) != [(True,)]]


def held_back(store: ProjectionStore, monkeypatch: pytest.MonkeyPatch) -> list[Write]:
    """The store's writes from now on, kept instead of made (to make some of them later)."""
    kept: list[Write] = []
    monkeypatch.setattr(
        store, "_insert", lambda table, data: kept.append(("i", table, b"".join(data)))
    )
    monkeypatch.setattr(store, "_run", lambda sql, params=None: kept.append(("r", sql, params)))
    return kept


def make(store: ProjectionStore, writes: list[Write]) -> None:
    for kind, what, data in writes:
        if kind == "i":
            ProjectionStore._insert(store, what, [data])
        else:
            ProjectionStore._run(store, what, data)


def next_owner(store: ProjectionStore, claim: int) -> ProjectionStore:
    """The same store opened by another process (nothing it marked is known), claiming it."""
    other = ProjectionStore(store.client, store.database)
    other.embedded = store.embedded
    other.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, KEY, claim, 0)]})
    return other


def take_over_and_finish(store: ProjectionStore, events: list[Any], claim: int) -> None:
    """Discard what a commit cut short left, then project the rest: every event once."""
    found = store.checkpoints()
    store.discard_unfinished(found, {ORG: (KEY, claim)})
    done = store.positions()[ORG]
    projector = Projector()
    projector.project(events[:done])  # state only
    store.insert(projector.project(events[done:]), {ORG: (KEY, claim)})
    assert store.positions()[ORG] == len(events)
    assert twice(store) == []


def test_a_commit_cut_short_after_renewed_marks_is_discarded_by_the_next_owner(
    open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With marks 4 ahead, commits of 2 events renew them every other commit; the fifth
    commit, cut before each of its writes in turn, leaves no row twice once taken over (a
    renewed mark noted but never inserted would let its rows through: no discard)."""
    monkeypatch.setattr(store_module, "MARK_AHEAD", 4)
    events = ledger(builder, 6)
    chunks = [events[i : i + 2] for i in range(0, 10, 2)]
    cut = 0
    store: ProjectionStore | None = None
    while True:
        if store is not None:  # as a new database (test_emptied_is_what_drop_all_and_migrate_leave)
            emptied(store)
        store = open_store("renewed")  # a new object: nothing it marked or staged is known
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, KEY, 1, 0)]})
        projector = Projector()
        for chunk in chunks[:-1]:
            store.insert(projector.project(chunk), {ORG: (KEY, 1)})
        rows = projector.project(chunks[-1])
        with monkeypatch.context() as patch:
            writes = held_back(store, patch)
            store.insert(rows, {ORG: (KEY, 1)})
        if cut == len(writes):
            break
        make(store, writes[:cut])  # the worker died before write number `cut`
        take_over_and_finish(next_owner(store, 2), events, 2)
        cut += 1
    assert cut >= 5  # rows of 4 tables at least, then the checkpoints


def test_a_commit_that_left_any_one_table_in_is_discarded_by_the_next_owner(
    open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's tables go in at once: cut short, any of them may be in without the others
    (the audit table first is no longer a rule)."""
    events = ledger(builder, 6)
    projector = Projector()
    first, second = projector.project(events[:6]), projector.project(events[6:9])
    tables = [table for table, rows in second.items() if rows and table in t.HISTORY]
    assert len(tables) >= 4
    store: ProjectionStore | None = None
    for table in tables:
        if store is not None:  # as a new database (test_emptied_is_what_drop_all_and_migrate_leave)
            emptied(store)
        store = open_store("alone")  # a new object: nothing it marked or staged is known
        store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, KEY, 1, 0)]})
        store.insert(first, {ORG: (KEY, 1)})
        with monkeypatch.context() as patch:
            writes = held_back(store, patch)
            store.insert(second, {ORG: (KEY, 1)})
        make(store, [w for w in writes if w[1] in (t.CHECKPOINTS, table)])
        assert store.positions()[ORG] == 6
        take_over_and_finish(next_owner(store, 2), events, 2)


def test_a_workers_commit_moves_the_rejections_lanes_even_when_its_claim_is_refused(
    store: ProjectionStore,
) -> None:
    """The lanes' checkpoints ride in the claimed checkpoints' statement but need no claim
    (each lane has one writer, its rows are identical whoever inserts them); a ledger
    checkpoint goes in only while its claim is the latest."""
    store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, KEY, 1, 0)]})
    lanes = t.REJECTION_STREAM
    store.insert(
        {t.CHECKPOINTS: [(t.LEDGER_STREAM, ORG, 10, 0), (lanes, "0", 5, 0)]}, {ORG: (KEY, 1)}
    )
    assert (store.positions(), store.positions(lanes)) == ({ORG: 10}, {"0": 5})
    store.insert({t.CHECKPOINTS: [(t.OWNER_STREAM, KEY, 2, 0)]})  # another worker's claim
    store.insert(
        {t.CHECKPOINTS: [(t.LEDGER_STREAM, ORG, 20, 0), (lanes, "0", 9, 0)]}, {ORG: (KEY, 1)}
    )
    assert store.positions() == {ORG: 10}
    assert store.positions(lanes) == {"0": 9}


def three_orgs(store: ProjectionStore, tmp_path: Path) -> dict[str, int]:
    """Three orgs' ledgers committed, with very different checkpoints ("big" has committed
    rows far beyond the others' checkpoints); every history table merged into one part per
    partition, and each org's ``ledger-begun`` mark ``MARK_AHEAD`` beyond its checkpoint (as a
    worker's commits leave them). Returns the checkpoints."""
    for org, check_ins in (("big", 100), ("mid", 12), ("small", 1)):
        ledger_of = LedgerBuilder(tmp_path / f"{org}.db", org=org)
        try:
            store.insert(Projector().project(ledger(ledger_of, check_ins)))
        finally:
            ledger_of.close()
    merge_all(store)
    committed = store.positions()
    marks = [
        (t.BEGUN_STREAM, org, end + store_module.MARK_AHEAD, 0) for org, end in committed.items()
    ]
    store.insert({t.CHECKPOINTS: marks})
    assert committed["big"] > 5 * committed["small"]
    return committed


def merge_all(store: ProjectionStore) -> None:
    for table in t.HISTORY:
        store.client.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")


BEYOND_READ = [table for table in t.HISTORY if table != t.REJECTIONS]


def read_whole(monkeypatch: pytest.MonkeyPatch, committed: dict[str, int], split: bool) -> None:
    """Every org read by a term of its own (``READ_WHOLE`` 0), or ``split``: "small" read whole
    beside the others' own terms, in the same condition."""
    monkeypatch.setattr(store_module, "READ_WHOLE", committed["small"] if split else 0)


@pytest.mark.parametrize("split", [False, True], ids=["own-terms", "small-read-whole"])
def test_rows_beyond_a_checkpoint_in_any_table_of_any_org_are_found_exactly(
    store: ProjectionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: bool
) -> None:
    """A row beyond its org's checkpoint, alone in any one history table, is found, for the
    org with the smallest checkpoint (the others' committed rows are far beyond it, in the
    same merged part) and for the one with the largest; merged into the part of the committed
    rows too; and nothing is found once it is gone."""
    committed = three_orgs(store, tmp_path)
    read_whole(monkeypatch, committed, split)
    assert store._beyond(committed) == set()
    tables = [t_ for t_ in BEYOND_READ if store.rows(f"SELECT count() FROM {{db}}.{t_}") != [(0,)]]
    assert {t.AUDIT, t.CHECK_INS, t.KEY_RESULTS, t.OBJECTIVES, t.EVENT_TIMES} <= set(tables)
    for table in tables:
        for org in ("small", "big"):
            if store.rows(f"SELECT count() FROM {{db}}.{table} WHERE org_id = '{org}'") == [(0,)]:
                continue
            store.client.command(
                f"INSERT INTO {store.database}.{table} SELECT * REPLACE "
                f"(toUInt64({committed[org] + 1}) AS sequence) FROM {store.database}.{table} "
                f"WHERE org_id = '{org}' LIMIT 1"
            )
            assert store._beyond(committed) == {org}, (table, org)
            store.client.command(f"OPTIMIZE TABLE {store.database}.{table} FINAL")
            assert store._beyond(committed) == {org}, (table, org, "merged")
            assert store._beyond({o: committed[o] for o in committed if o != org}) == set()
            assert store._beyond({org: committed[org] + 1}) == set()
            found = store.checkpoints()
            assert store.discard_unfinished(found) == [org], (table, org)
            assert store._beyond(committed) == set(), (table, org)


@pytest.mark.parametrize("split", [False, True], ids=["own-terms", "small-read-whole"])
def test_a_commit_cut_short_and_merged_into_an_old_part_is_discarded_exactly(
    store: ProjectionStore,
    builder: LedgerBuilder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    split: bool,
) -> None:
    """A worker's commit cut short whose rows were merged with the committed ones (an old
    part) before the takeover: its org's rows beyond the checkpoint are discarded from every
    table, no other org's row and no committed row goes."""
    committed = three_orgs(store, tmp_path)
    read_whole(monkeypatch, committed, split)
    events = ledger(builder, 8)
    projector = Projector()
    store.insert(projector.project(events[:6]))
    second = projector.project(events[6:])
    store.insert({table: rows for table, rows in second.items() if table != t.CHECKPOINTS})
    store.insert({t.CHECKPOINTS: [(t.BEGUN_STREAM, ORG, len(events), 0)]})
    merge_all(store)
    counts = {table: _counts(store, table) for table in BEYOND_READ}
    assert store._beyond({**committed, ORG: 6}) == {ORG}
    assert store.discard_unfinished(store.checkpoints()) == [ORG]
    for table, before in counts.items():
        kept = {org: n for org, n in before.items() if org != ORG}
        assert {org: n for org, n in _counts(store, table).items() if org != ORG} == kept
    later = "SELECT count() FROM {db}.%s WHERE org_id = {org:String} AND sequence > 6"
    for table in BEYOND_READ:
        assert store.rows(later % table, {"org": ORG}) == [(0,)], table
    assert store.positions()[ORG] == 6
    assert twice(store) == []


def _counts(store: ProjectionStore, table: str) -> dict[str, int]:
    rows = store.rows(f"SELECT toString(org_id), count() FROM {{db}}.{table} GROUP BY org_id")
    return {str(org): int(n) for org, n in rows}
