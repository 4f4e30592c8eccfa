"""Answers as of a ledger sequence start from the snapshot at the greatest multiple of
``processors.tables.SNAPSHOT_EVERY`` at or below it and read the rows after it: they equal a
rebuild of the ledger prefix whatever falls on either side of a snapshot (corrections and
retractions of check-ins recorded before it, the current check-in retracted after it, a
back-dated target revision, a key result retired or defined after it)."""

from pathlib import Path
from typing import Any

import pytest

from processors import tables as t
from processors.projector import Projector
from projections import queries, sql
from projections.queries import Moment, snapshot_base
from projections.store import ProjectionStore
from schemas.errors import ProjectionError
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day, project_prefix
from tests.projections.properties import all_answers, normal

EVERY = 4


@pytest.fixture
def every_four(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", EVERY)


def _ledger(builder: LedgerBuilder) -> None:
    """Events 1-4 the skeleton (a snapshot at 4), then objectives, key results and check-ins
    whose corrections and retractions fall on the other side of a snapshot."""
    builder.skeleton()  # 1-4
    builder.objective("o1", rollup="both")  # 5
    builder.objective("o2", parent_objective_id="o1")  # 6
    builder.key_result("k1", "o1")  # 7
    builder.key_result("k2", "o2")  # 8: snapshot
    early = builder.check_in("k1", 10, day(5), 0.9)  # 9
    builder.check_in("k1", 20, day(10), 0.8)  # 10
    k2_only = builder.check_in("k2", 30, day(8), 0.7)  # 11
    current = builder.check_in("k1", 40, day(12), 0.6)  # 12: snapshot, the current of k1
    retract = {"key_result_id": "k1", "retracts_event_id": current, "reason": "wrong"}
    builder.add("CheckInRetracted", retract, day(13))  # 13: the current falls back to day 10
    fix = {"key_result_id": "k1", "corrects_event_id": early, "value": 15, "reason": "typo"}
    builder.add("CheckInCorrected", fix, day(14))  # 14: a check-in from before the snapshot
    builder.check_in("k1", 5, day(3), 0.5)  # 15: late, before the others in business time
    revise = {"key_result_id": "k1", "target": 50, "reason": "rescoped"}
    builder.add("KeyResultTargetRevised", revise, day(4), recorded=day(16))  # 16: snapshot
    gone = {"key_result_id": "k2", "retracts_event_id": k2_only, "reason": "wrong"}
    builder.add("CheckInRetracted", gone, day(17))  # 17: k2 has no check-in left
    builder.add("KeyResultDefined", {  # 18: defined after a snapshot
        "key_result_id": "k3", "objective_id": "o2", "title": "k3", "kind": "stay_above",
        "start": 0, "target": 5, "unit": "points",
    }, day(18))  # fmt: skip
    builder.add("KeyResultRetired", {"key_result_id": "k2", "reason": "dropped"}, day(19))  # 19
    builder.check_in("k3", 7, day(19), 0.4)  # 20: snapshot
    builder.check_in("k1", 35, day(20), 0.3)  # 21


PREFIXES = (range(0, 6), range(6, 12), range(12, 17), range(17, 22))
"""Every prefix of the 21 events, in four tests (they run on several workers at once)."""


@pytest.mark.parametrize("prefixes", PREFIXES, ids=lambda r: f"{r.start}-{r.stop - 1}")
def test_answers_as_of_every_event_equal_a_rebuild_of_the_prefix(
    every_four: None,
    tmp_path: Path,
    builder: LedgerBuilder,
    open_store: StoreFactory,
    prefixes: range,
) -> None:
    _ledger(builder)
    full, prefix = open_store("full"), open_store("prefix")
    project(builder, full)
    events = builder.events()
    assert len(events) == 21
    numbers = full.rows(
        "SELECT sequence, count() FROM {db}.key_result_numbers WHERE sequence % 4 = 0 "
        "GROUP BY sequence ORDER BY sequence"
    )
    assert numbers == [(8, 2), (12, 2), (16, 2), (20, 3)]  # every key result at a snapshot
    stamps = full.rows(
        "SELECT sequence, groupArray(objective_id) FROM {db}.objective_stamps "
        "GROUP BY sequence ORDER BY sequence"
    )
    assert stamps == [(8, ["o1", "o2"]), (12, ["o1", "o2"]), (16, ["o1", "o2"]),
                      (20, ["o1", "o2"])]  # fmt: skip
    assert sorted(k for r in PREFIXES for k in r) == list(range(len(events) + 1))
    for k in prefixes:
        project_prefix(events[:k], prefix, tmp_path)
        cutoff = events[k - 1].recorded if k else events[0].recorded - (day(2) - day(1))
        assert snapshot_base(k) == k - k % EVERY
        assert all_answers(full, Moment(as_of=cutoff)) == all_answers(prefix, Moment(now=cutoff)), (
            f"as of event {k}"
        )
        for at in (day(4), day(11), day(30)):
            assert all_answers(full, Moment(as_of=cutoff, at=at)) == all_answers(
                prefix, Moment(at=at)
            ), f"as of event {k}, at {at}"


def test_the_snapshots_interval_does_not_change_an_answer(
    tmp_path: Path,
    builder: LedgerBuilder,
    open_store: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Projected with snapshots every 4 events or with none in reach, the answers as of
    each event are the same (only the rows read differ)."""
    _ledger(builder)
    sparse = open_store("sparse")
    project(builder, sparse)
    monkeypatch.setattr(t, "SNAPSHOT_EVERY", EVERY)
    dense = open_store("dense")
    project(builder, dense)
    for event in builder.events():
        moment = Moment(as_of=event.recorded, now=day(40))
        monkeypatch.setattr(t, "SNAPSHOT_EVERY", 8192)
        expected = all_answers(sparse, moment)
        monkeypatch.setattr(t, "SNAPSHOT_EVERY", EVERY)
        assert all_answers(dense, moment) == expected, event.sequence


def test_an_answer_reads_the_rows_from_its_snapshot_on(
    every_four: None,
    builder: LedgerBuilder,
    store: ProjectionStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The numbers of key results as of event 14 come from the rows of sequences 12 to 14,
    not from the check-ins' history (the statement names no other table)."""
    _ledger(builder)
    project(builder, store)
    read: list[str] = []
    query = store._query

    def logged(statement: str, *args: Any, **kwargs: Any) -> Any:
        read.append(statement)
        return query(statement, *args, **kwargs)

    monkeypatch.setattr(store, "_query", logged)  # every statement, on any connection
    moment = Moment(as_of=builder.events()[13].recorded, now=day(40))
    found = {kr["key_result_id"]: kr for kr in queries.key_results(store, ORG, moment)}
    assert not any(t.CHECK_INS in statement for statement in read)
    assert [s for s in read if t.KEY_RESULT_NUMBERS in s]
    k1 = found["k1"]
    assert (k1["value"], k1["check_in_count"], k1["last_check_in_at"]) == (20, 2, day(10))
    assert (k1["as_of_sequence"], found["k2"]["check_in_count"]) == (14, 1)


@pytest.fixture
def store(open_store: StoreFactory) -> ProjectionStore:
    return open_store("snapshots")


def test_the_objectives_versions_and_changes_join_as_the_sql_joins_them(
    every_four: None, builder: LedgerBuilder, store: ProjectionStore
) -> None:
    """As of each event, the objectives' versions and last changes, read apart (at once) and
    joined in Python, are the rows of the SQL join."""
    _ledger(builder)
    project(builder, store)
    for event in builder.events():
        moment = Moment(as_of=event.recorded, now=day(40))
        statements = queries._structure_statements(ORG, event.sequence, moment)
        versions, updates = store.dicts_together(statements)
        joined = store.dicts(sql.objective_structures_as_of("{db}"), statements[0][1])
        assert queries._structures(versions, updates) == joined, event.sequence


def test_an_answer_as_of_a_moment_past_a_commit_cut_short_stops_at_the_checkpoint(
    every_four: None, tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """A commit cut short leaves rows without their checkpoint (the store inserts one table at
    a time). Here the audit and time rows of events 18-21 (k3 is defined at 18): as of their
    time, the answer is what the checkpoint's 17 events say then, not an error over a
    half-stored k3."""
    _ledger(builder)
    events = builder.events()
    cut = open_store("cut")
    project_prefix(events[:17], cut, tmp_path)
    rows = Projector().project_records(builder.log.read_records())
    cut.insert(
        {  # no checkpoint
            table: [row for row in rows[table] if row[1] > 17] for table in (t.AUDIT, t.EVENT_TIMES)
        }
    )
    assert cut.positions() == {ORG: 17}
    last = events[-1].recorded
    assert all_answers(cut, Moment(as_of=last)) == all_answers(cut, Moment(now=last))


def test_an_empty_choice_of_key_results_reads_none(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    """``only=[]`` (an objective without key results, in ``trend``) is no key result, with or
    without ``at``: not every key result of the org."""
    _ledger(builder)
    project(builder, store)
    for moment in (Moment(), Moment(at=day(11)), Moment(as_of=day(12), at=day(11))):
        assert queries.key_results(store, ORG, moment, only=[]) == [], moment
        assert queries.key_results(store, ORG, moment, only=["k1"]) != [], moment


def test_a_definition_without_its_numbers_is_a_damaged_store_not_a_key_error(
    every_four: None, builder: LedgerBuilder, store: ProjectionStore
) -> None:
    """Up to a checkpoint every key result's definition comes with its numbers; a store that
    lost them (here: k3's, defined at 18) says so and what to do."""
    _ledger(builder)
    project(builder, store)
    store.client.command(
        f"ALTER TABLE {store.database}.{t.KEY_RESULT_NUMBERS} DELETE WHERE key_result_id = 'k3'",
        settings={"mutations_sync": 2},
    )
    with pytest.raises(ProjectionError, match=r"'k3' has no numbers as of sequence 21.*rebuild"):
        queries.key_results(store, ORG, Moment(as_of=builder.events()[-1].recorded))


def _progress(store: ProjectionStore, org: str, moment: Moment) -> Any:
    found = queries.progress(store, org, moment, 2)
    return normal([found.objectives, found.key_results, queries.coverage(store, org, moment)])


def test_two_orgs_in_one_batch_answer_as_of_each_of_their_events_from_their_own_snapshots(
    every_four: None, tmp_path: Path, open_store: StoreFactory
) -> None:
    """Each org's sequence has its own snapshots: acme's 21 events, then globex's 9 (its
    snapshots at 4 and 8; its ids are acme's), then acme's 22nd, projected in one batch beside
    acme alone. Acme answers as of each of its first 21 events as it does alone, and globex
    as a rebuild of its prefix does."""
    mixed, alone = LedgerBuilder(tmp_path / "mixed.db"), LedgerBuilder(tmp_path / "alone.db")
    try:
        _ledger(mixed)
        _ledger(alone)
        mixed.org = "globex"
        mixed.skeleton()  # 1-4
        mixed.objective("o1")  # 5: the ids of acme's, as another org may well choose
        mixed.key_result("k1", "o1")  # 6
        first = mixed.check_in("k1", 10, day(5))  # 7
        mixed.check_in("k1", 20, day(6))  # 8: snapshot
        retract = {"key_result_id": "k1", "retracts_event_id": first, "reason": "wrong"}
        mixed.add("CheckInRetracted", retract, day(7))  # 9
        globex = mixed.events()
        mixed.org = ORG
        mixed.check_in("k1", 45, day(21))  # acme 22
        both, single = open_store("both"), open_store("single")
        project(mixed, both)
        project(alone, single)
        assert both.positions() == {ORG: 22, "globex": 9}
        for event in alone.events():
            moment = Moment(as_of=event.recorded, now=day(40))
            assert _progress(both, ORG, moment) == _progress(single, ORG, moment), event.sequence
        prefix = open_store("prefix")
        for k in range(1, len(globex) + 1):
            project_prefix(globex[:k], prefix, tmp_path)
            cutoff = globex[k - 1].recorded
            assert _progress(both, "globex", Moment(as_of=cutoff)) == _progress(
                prefix, "globex", Moment(now=cutoff)
            ), f"globex as of event {k}"
    finally:
        mixed.close()
        alone.close()
