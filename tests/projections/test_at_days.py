"""``--at`` from the check-ins per business day (migration 10's projections of
``check_in_versions``): the same counts and current check-ins as one pass over every check-in,
on each path (a key result read from the days, from its check-ins when versions there are
later than the ledger cut, its current one read again when the latest there is retracted),
and each statement answered by the projection it is written for, as by the table."""

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
    for kr in ("k1", "k2", "k3", "k4"):
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
    times.append(day(2, 12))
    builder.check_in("k2", 99, day(2, 12))  # late: recorded on day 7
    builder.add("CheckInCorrected", {"key_result_id": "k1", "corrects_event_id": ids["k1", 3, 18],
                                     "value": 1, "reason": "typo"}, day(8))  # fmt: skip
    builder.add("CheckInRetracted", {"key_result_id": "k3", "retracts_event_id": ids["k3", 7, 15],
                                     "reason": "wrong"}, day(8))  # the latest  # fmt: skip
    builder.add("CheckInRetracted", {"key_result_id": "k2", "retracts_event_id": ids["k2", 2, 9],
                                     "reason": "wrong"}, day(8))  # fmt: skip
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


@pytest.mark.parametrize("share", [float("inf"), 0.25])
def test_the_days_count_as_one_pass_does(
    open_store: StoreFactory,
    builder: LedgerBuilder,
    monkeypatch: pytest.MonkeyPatch,
    share: float,
) -> None:
    """At each cut of the ledger and business time (the check-ins' own times too: a day's
    first and last microsecond): the same live count and current check-in per key result.
    ``share``: infinite, never one pass (each path of the days' reading); else as shipped."""
    times = _write(builder)
    store = open_store("at_days")
    project(builder, store)
    monkeypatch.setattr(queries, "ONE_PASS_SHARE", share)
    paths: set[str] = set()
    for event in builder.events()[12::3]:
        for at in AT_TIMES + times[::3]:
            params = queries._params(ORG, event.sequence, Moment(at=at), at=at)
            expected = _plain(queries._measured_in_one_pass(store, params, ""))
            assert _plain(queries._measured(store, params, "")) == expected
            paths |= _paths(store, params)
    if share == float("inf"):
        assert paths == {"days", "whole", "recheck"}


def _paths(store: ProjectionStore, params: dict[str, Any]) -> set[str]:
    """How the key results are read at these parameters (as :func:`queries._measured`)."""
    found = set()
    for _kr, _recorded, _retracted, latest, gone, newest in store.rows(sql.check_in_days(), params):
        if newest > params["seq"]:
            found.add("whole")
        elif latest and latest == gone:
            found.add("recheck")
        else:
            found.add("days")
    return found


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


@pytest.mark.parametrize(
    ("projection", "statement"),
    [
        ("by_day", sql.check_in_days()),
        ("by_time", sql.check_ins_at(part=sql.ON_AT_DAY)),
        ("by_check_in", sql.current_versions()),
    ],
)
def test_each_statement_is_answered_by_its_projection_as_by_the_table(
    open_store: StoreFactory, builder: LedgerBuilder, projection: str, statement: str
) -> None:
    """The projection is used (``force_optimize_projection_name``: an error if not), and its
    rows are the table's; after a merge too. (1,500 more check-ins of one key result, so that
    the table's granules of 256 rows hold fewer days than the projections' and ClickHouse
    finds the projections cheaper.)"""
    _write(builder)
    for n in range(1500):
        builder.check_in("k4", n, day(1) + timedelta(minutes=8 * n))
    store = open_store(f"at_days_{projection}")
    project(builder, store)
    last = builder.events()[-1].sequence
    current = sorted(  # a few check-ins recorded together, as the current ones at a moment
        n for (n,) in store.rows("SELECT DISTINCT check_in_sequence FROM {db}.check_in_versions")
    )[-40:-30]
    for merged in (False, True):
        if merged:  # one part: the table's granules against the projection's
            store.client.command(f"OPTIMIZE TABLE {store.database}.{t.CHECK_INS} FINAL")
        for at in (day(7, 16), day(7, 23)):  # a day with many check-ins, and a retraction
            params = {
                "org": ORG, "seq": last - 3, "at": at, "whole": ["k2"], "rest": ["k2", "k3"],
                "current": current,
            }  # fmt: skip
            setting = (
                f"force_optimize_projection_name = '{projection}'"
                if merged and projection != "by_check_in"
                else "optimize_use_projections = 1"  # each small part: its cheaper read
            )  # by_check_in: forced in test_migrations (here the table's one mark is as cheap)
            used = store.rows(f"{statement} SETTINGS {setting}", params)
            table = store.rows(f"{statement} SETTINGS optimize_use_projections = 0", params)
            assert sorted(used) == sorted(table)
