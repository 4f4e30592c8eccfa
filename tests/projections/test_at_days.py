"""``--at`` from the check-ins per business day (migration 11: ``check_in_days``, filled by a
materialized view from every insert into ``check_in_versions``): the same counts and current
check-ins as one pass over every check-in, at every ledger cut and business time, on each
path (a key result read from its days; from its check-ins when versions there are later than
the cut, when its latest before the day is retracted, or when the days count it wrongly: rows
inserted twice, or deleted and projected again, also when a recorded row and a retracted row
twice cancel in the net count)."""

from datetime import datetime, timedelta
from typing import Any

import pytest

from processors import tables as t
from projections import queries, sql
from projections.queries import Moment
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day

AT_TIMES = [day(n, hour) for n in (0, 2, 3, 5, 6, 9) for hour in (0, 7, 23)]


def _write(builder: LedgerBuilder) -> list[datetime]:
    """Check-ins at several times of several days (two at midnight, one at the day's last
    microsecond), some recorded days later, a correction, retractions (one of a key result's
    latest, one of an earlier one) and a back-dated target revision. Returns the check-ins'
    business times."""
    builder.skeleton()
    builder.objective("o1")
    for kr in ("k1", "k2", "k3", "k4", "k5"):
        builder.key_result(kr, "o1")
    times = []
    ids = {}
    for n in range(1, 8):
        for kr, hour in (("k1", 0), ("k2", 9), ("k3", 15), ("k1", 18)):
            moment = day(n, hour)
            times.append(moment)
            ids[kr, n, hour] = builder.check_in(kr, 10 * n + hour, moment)
    last_microsecond = day(4, 0) - timedelta(microseconds=1)
    times.append(last_microsecond)
    builder.check_in("k4", 7, last_microsecond)
    builder.check_in("k4", 8, last_microsecond)  # the same business time: the later one counts
    times.append(day(2, 12))
    builder.check_in("k2", 99, day(2, 12))  # late: recorded on day 7
    gone = builder.check_in("k5", 5, day(3, 1))
    builder.add("CheckInCorrected", {"key_result_id": "k1", "corrects_event_id": ids["k1", 3, 18],
                                     "value": 1, "reason": "typo"}, day(8))  # fmt: skip
    builder.add("CheckInRetracted", {"key_result_id": "k3", "retracts_event_id": ids["k3", 7, 15],
                                     "reason": "wrong"}, day(8))  # the latest  # fmt: skip
    builder.add("CheckInRetracted", {"key_result_id": "k2", "retracts_event_id": ids["k2", 2, 9],
                                     "reason": "wrong"}, day(8))  # fmt: skip
    builder.add("CheckInRetracted", {"key_result_id": "k5", "retracts_event_id": gone,
                                     "reason": "wrong"}, day(8))  # its only one  # fmt: skip
    builder.add("KeyResultTargetRevised", {"key_result_id": "k1", "target": 80,
                                           "reason": "scope"}, day(3, 6))  # fmt: skip
    return times


def _plain(found: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each key result's (live, current), those with neither left out."""
    return {
        kr: (int(m["live"]), int(m["current"]))
        for kr, m in found.items()
        if m["live"] or m["current"]
    }


def _then(store: ProjectionStore, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The key results as of ``{seq}`` with the projector's live counts (as ``--at`` reads
    them before :func:`queries._measured`)."""
    definitions = store.dicts(sql.key_result_definition_versions("{db}"), params)
    numbers = store.dicts(sql.key_result_numbers_as_of("{db}"), params)
    return queries._key_results_then(params, definitions, numbers)


def _paths(
    store: ProjectionStore,
    params: dict[str, Any],
    then: list[dict[str, Any]],
    days: list[tuple[Any, ...]] | None = None,
) -> set[str]:
    """How the key results are read at these parameters (as :func:`queries._measured`).
    ``days``: the rows of :func:`sql.check_in_days` at these parameters, if read already."""
    counts = {d["key_result_id"]: d["check_in_count"] for d in then}
    found = set()
    for row in store.rows(sql.check_in_days(), params) if days is None else days:
        kr, _before, latest, gone, recorded, retracted, retracted_keys, newest, _, on_day = row
        if newest > params["seq"]:
            found.add("later")
        elif retracted != retracted_keys or recorded - retracted != counts.get(kr):
            found.add("miscounted")
        elif latest and latest == gone and not on_day:
            found.add("retracted")
        else:
            found.add("days")
    return found


def _assert_as_one_pass(
    store: ProjectionStore, builder: LedgerBuilder, times: list[datetime]
) -> set[str]:
    """At each cut and time, :func:`queries._measured` as one pass; return the paths taken.

    The days' statements name no ledger sequence (``{org}`` and ``{at}``), nor do the key
    results' (``{org}``, ``{seq}`` and ``{base}``) a business time: each is read once per time,
    or per cut, for every pair of them (the store does not change in between)."""
    paths: set[str] = set()
    cuts = builder.events()[12::3]
    thens: dict[int, list[dict[str, Any]]] = {}
    for at in AT_TIMES + times[::3]:
        day_rows: tuple[list[dict[str, Any]], list[tuple[Any, ...]]] | None = None
        for event in cuts:
            params = queries._params(ORG, event.sequence, Moment(at=at), at=at)
            if day_rows is None:
                days = queries._check_in_days(  # the two sides the CLI reads at once, joined
                    store.dicts(sql.check_in_days_all(), params),
                    store.dicts(sql.check_in_day_of_at(), params),
                )
                joined = store.rows(sql.check_in_days(), params)
                assert sorted(tuple(row.values()) for row in days) == sorted(joined), at
                day_rows = days, joined
            days, joined = day_rows
            if event.sequence not in thens:
                thens[event.sequence] = _then(store, params)
            then = thens[event.sequence]
            expected = _plain(queries._measured_in_one_pass(store, params, ""))
            assert _plain(queries._measured(store, params, then, False, days)) == expected, (
                event.sequence, at)  # fmt: skip
            paths |= _paths(store, params, then, joined)
    return paths


@pytest.mark.parametrize("share", [float("inf"), 0.25])
def test_the_days_count_as_one_pass_does(
    open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    """At each cut of the ledger and business time (the check-ins' own times too: a day's
    first and last microsecond): the same live count and current check-in per key result.
    ``share``: infinite, never one pass for all (each path of the days' reading); else as
    shipped."""
    times = _write(builder)
    store = open_store("at_days")
    project(builder, store)
    monkeypatch.setattr(queries, "ONE_PASS_SHARE", share)
    paths = _assert_as_one_pass(store, builder, times)
    if share == float("inf"):
        assert paths == {"days", "later", "retracted"}


@pytest.mark.parametrize("merged", [False, True], ids=["unmerged", "merged"])
def test_rows_counted_twice_in_the_days_are_read_from_the_check_ins(
    open_store: StoreFactory,
    builder: LedgerBuilder,
    monkeypatch: pytest.MonkeyPatch,
    merged: bool,
) -> None:
    """The days are filled by a materialized view, which sees every insert and no delete:
    a worker's commit inserted twice (after a takeover), and a commit cut short (deleted from
    ``check_in_versions`` by the store) and projected again, are counted twice there. Those key
    results are found miscounted and read from their check-ins: the answers stay exact, merged
    or not."""
    times = _write(builder)
    store = open_store("at_days_twice")
    project(builder, store)
    monkeypatch.setattr(queries, "ONE_PASS_SHARE", float("inf"))
    db = store.database
    store.client.command(  # rows twice: k1's
        f"INSERT INTO {db}.{t.CHECK_INS} "
        f"SELECT * FROM {db}.{t.CHECK_INS} WHERE key_result_id = 'k1'"
    )
    store.client.command(  # deleted as the store discards a commit cut short, then again: k2's
        f"CREATE TABLE {db}.kept AS {db}.{t.CHECK_INS} ENGINE = MergeTree ORDER BY tuple()"
    )
    store.client.command(
        f"INSERT INTO {db}.kept SELECT * FROM {db}.{t.CHECK_INS} WHERE key_result_id = 'k2'"
    )
    store.client.command(
        f"ALTER TABLE {db}.{t.CHECK_INS} DELETE WHERE key_result_id = 'k2' "
        "SETTINGS mutations_sync = 2"
    )
    store.client.command(f"INSERT INTO {db}.{t.CHECK_INS} SELECT * FROM {db}.kept")
    store.client.command(f"DROP TABLE {db}.kept")
    if merged:
        for table in (t.CHECK_INS, t.CHECK_IN_DAYS):
            store.client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    last = builder.events()[-1].sequence
    params = queries._params(ORG, last, Moment(at=day(5)), at=day(5))
    assert "miscounted" in _paths(store, params, _then(store, params))
    _assert_as_one_pass(store, builder, times)


def test_progress_at_equals_progress_at_from_one_pass(
    open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole answer, with and without ``--as-of``, as from one pass over the check-ins."""
    times = _write(builder)
    store = open_store("at_days_answers")
    project(builder, store)
    events = builder.events()
    moments = [Moment(at=at, now=day(30)) for at in AT_TIMES + times[::5]] + [
        Moment(as_of=event.recorded, at=at, now=day(30))
        for event in events[12::6]
        for at in AT_TIMES[::2]
    ]
    for moment in moments:
        monkeypatch.setattr(queries, "ONE_PASS_SHARE", float("inf"))
        from_days = queries.progress(store, ORG, moment, 5)
        monkeypatch.setattr(queries, "ONE_PASS_SHARE", -1.0)
        assert from_days == queries.progress(store, ORG, moment, 5), moment


def test_the_days_hold_each_check_in_once_after_a_rebuild(
    open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    """``rebuild`` drops every table and view (the days and their materialized view too) and
    projects the ledger again: each check-in counted once, as in a fresh store."""
    _write(builder)
    store = open_store("at_days_rebuilt")
    project(builder, store)
    counted = "SELECT sum(recorded), sum(retracted), max(newest) FROM {db}.check_in_days"
    before = store.rows(counted)
    store.drop_all(sync=True)
    store.migrate()
    project(builder, store)
    assert store.rows(counted) == before
    rows = "SELECT countIf(change = 'recorded'), countIf(change = 'retracted') FROM {db}.{table}"
    assert before[0][:2] == store.rows(rows.replace("{table}", t.CHECK_INS))[0] == (32, 3)


def test_a_recorded_row_and_a_retracted_row_twice_are_found_though_they_cancel(
    open_store: StoreFactory, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """k3's check-in of day 3 recorded twice in the days and its retraction of day 7's check-in
    twice (a commit inserted again after a takeover, or the migration's race): the net count
    over every day is the projector's, but before *T*'s day (day 5) one check-in too many.
    Both sums are checked, so k3 is read from its check-ins: the answers at *T* (count and
    value), with and without ``--as-of``, are those of a store without the rows twice."""
    _write(builder)
    store, clean = open_store("at_days_cancel"), open_store("at_days_clean")
    project(builder, store)
    project(builder, clean)
    db = store.database
    store.client.command(
        f"INSERT INTO {db}.{t.CHECK_INS} SELECT * FROM {db}.{t.CHECK_INS} "
        "WHERE key_result_id = 'k3' AND (change = 'retracted' OR "
        f"change = 'recorded' AND toDate32(occurred_at) = '{day(3).date()}')"
    )
    assert store.rows(  # one recorded row twice, one retracted row twice: they cancel
        f"SELECT sum(recorded) - sum(retracted), uniqExactArray(gone_keys), sum(retracted) "
        f"FROM {db}.{t.CHECK_IN_DAYS} WHERE key_result_id = 'k3'"
    ) == [(6, 1, 2)]
    store.client.command(f"OPTIMIZE TABLE {db}.{t.CHECK_INS} FINAL")  # the history: once again
    monkeypatch.setattr(queries, "ONE_PASS_SHARE", float("inf"))
    last = builder.events()[-1].sequence
    at = day(5)
    params = queries._params(ORG, last, Moment(at=at), at=at)
    assert "miscounted" in _paths(store, params, _then(store, params))
    days = store.dicts(sql.check_in_days(), params)
    measured = _plain(queries._measured(store, params, _then(store, params), False, days))
    assert measured["k3"][0] == 4  # days 1-4 at 15:00
    assert measured == _plain(queries._measured_in_one_pass(clean, params, ""))
    moments = [Moment(at=at, now=day(30))] + [
        Moment(as_of=event.recorded, at=at, now=day(30)) for event in builder.events()[-6:]
    ]
    for moment in moments:
        answer = queries.progress(store, ORG, moment, 5)
        monkeypatch.setattr(queries, "ONE_PASS_SHARE", -1.0)
        assert answer == queries.progress(clean, ORG, moment, 5), moment
        monkeypatch.setattr(queries, "ONE_PASS_SHARE", float("inf"))
