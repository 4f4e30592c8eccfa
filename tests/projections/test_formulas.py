"""The time-dependent rules exist twice: in Python (``--at``) and in SQL (views, as-of).

These tests hold the two to the same answers, and pin the Python rules themselves.
"""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import scoring
from projections import sql
from projections.store import ProjectionStore

REF = "{ref:DateTime64(6, 'UTC')}"
QUERY = f"""
SELECT {sql.expected_sql(REF)}, {sql.status_sql("progress", sql.expected_sql(REF))},
    {sql.stale_sql(REF)}, {sql.expected_sql(REF, kind=None, due=None)},
    {sql.status_sql("progress", sql.expected_sql(REF, kind=None, due=None), "lifecycle")}
FROM (SELECT {{kind:String}} AS kind, {{progress:Float64}} AS progress,
    {{starts:Date32}} AS period_starts_on, {{ends:Date32}} AS period_ends_on,
    {{due:Nullable(Date32)}} AS due_on, {{lifecycle:String}} AS lifecycle,
    {{last:Nullable(DateTime64(6, 'UTC'))}} AS last_check_in_at,
    {{cadence:UInt16}} AS checkin_every_days, {{retired:Bool}} AS retired)
"""

moments = st.datetimes(
    min_value=datetime(2026, 6, 1), max_value=datetime(2027, 6, 1), timezones=st.just(UTC)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["increase", "decrease", "stay_above", "stay_below", "milestone"]),
    progress=st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5])),
    starts=st.dates(min_value=date(2026, 9, 1), max_value=date(2026, 12, 1)),
    length=st.integers(0, 120),
    ref=moments,
    last=st.one_of(st.none(), moments),
    cadence=st.integers(1, 30),
    retired=st.booleans(),
    due=st.one_of(st.none(), st.integers(0, 130)),
    lifecycle=st.sampled_from(["active", "achieved", "abandoned"]),
)
def test_sql_and_python_agree(
    store: ProjectionStore,
    *,
    kind: str,
    progress: float,
    starts: date,
    length: int,
    ref: datetime,
    last: datetime | None,
    cadence: int,
    retired: bool,
    due: int | None,
    lifecycle: str,
) -> None:
    ends = starts + timedelta(days=length)
    due_on = None if due is None else starts + timedelta(days=due)
    params = {"kind": kind, "progress": progress, "starts": starts, "ends": ends, "ref": ref,
              "last": last, "cadence": cadence, "retired": retired, "due": due_on,
              "lifecycle": lifecycle}  # fmt: skip
    [(expected, status, stale, objective_expected, objective_status)] = store.rows(QUERY, params)
    python_expected = scoring.expected_progress(kind, starts, ends, ref, due_on)
    assert expected == python_expected
    python_objective = scoring.expected_progress(None, starts, ends, ref)
    assert objective_expected == python_objective
    assert status == scoring.status(progress, python_expected)
    assert objective_status == scoring.status(progress, python_objective, lifecycle)
    assert stale == scoring.is_stale(
        retired=retired,
        last_check_in_at=last,
        cadence_days=cadence,
        starts_on=starts,
        ends_on=ends,
        ref=ref,
    )


@pytest.mark.parametrize(
    ("kind", "start", "target", "value", "expected"),
    [
        ("increase", 10, 50, 30, (0.5, 0.5)),
        ("increase", 10, 50, 70, (1.0, 1.5)),
        ("decrease", 100, 20, 120, (0.0, -0.25)),
        ("decrease", 100, 20, 40, (0.75, 0.75)),
        ("stay_above", 90, 95, 95, (1.0, 1.0)),
        ("stay_above", 90, 95, 94.9, (0.0, 0.0)),
        ("stay_below", 80, 50, 50, (1.0, 1.0)),
        ("stay_below", 80, 50, 51, (0.0, 0.0)),
        ("milestone", 0, 1, 1, (1.0, 1.0)),
        ("milestone", 0, 1, 0.99, (0.0, 0.0)),
    ],
)
def test_score(
    kind: str, start: float, target: float, value: float, expected: tuple[float, float]
) -> None:
    assert scoring.score(kind, start, target, value) == expected


def test_status_thresholds() -> None:
    assert scoring.status(0.4, 0.5) == "on_track"  # 0.1 behind: still on track
    assert scoring.status(0.39, 0.5) == "at_risk"
    assert scoring.status(0.25, 0.5) == "at_risk"  # 0.25 behind
    assert scoring.status(0.24, 0.5) == "off_track"
    assert scoring.status(0.9, 0.2) == "on_track"


def test_rollup_weights_and_empty() -> None:
    key_results = [("a", 1.0, 0.2), ("b", 3.0, 0.6)]
    children = [("c", 2.0, 1.0)]
    assert scoring.rollup_progress("key_results", key_results, children) == pytest.approx(0.5)
    assert scoring.rollup_progress("children", key_results, children) == 1.0
    assert scoring.rollup_progress("both", key_results, children) == pytest.approx(4 / 6)
    assert scoring.rollup_progress("children", key_results, []) == 0.0
    assert scoring.weakest([None, 0.7, 0.3]) == 0.3
    assert scoring.weakest([None]) is None


Q4 = (date(2026, 10, 1), date(2026, 12, 31))
"""92 days: 2026-10-01 00:00 UTC to 2027-01-01 00:00 UTC."""


def _at(day: int, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_expected_progress_is_linear_to_the_due_date() -> None:
    """Due 2026-11-15: from 10-01 to 11-16 00:00 is 46 days, so at 10-24 (23 days) half."""
    due = date(2026, 11, 15)
    assert scoring.expected_progress("increase", *Q4, _at(24, 10), due) == 23 / 46 == 0.5
    assert scoring.expected_progress("increase", *Q4, _at(16), due) == 1.0
    assert scoring.expected_progress("decrease", *Q4, _at(1, 10), due) == 0.0
    # without a due date: through the period (23 / 92)
    assert scoring.expected_progress("increase", *Q4, _at(24, 10)) == 0.25


def test_a_milestone_is_expected_at_0_until_its_due_date_then_1() -> None:
    due = date(2026, 11, 15)
    assert scoring.expected_progress("milestone", *Q4, _at(15, 11).replace(hour=23), due) == 0.0
    assert scoring.expected_progress("milestone", *Q4, _at(16), due) == 1.0
    assert scoring.expected_progress("milestone", *Q4, _at(31, 12).replace(hour=23)) == 0.0
    assert scoring.expected_progress("milestone", *Q4, _at(1, 1, 2027)) == 1.0
    # so an unreached milestone mid-quarter is on track, not off track
    assert scoring.status(0.0, scoring.expected_progress("milestone", *Q4, _at(20))) == "on_track"


def test_achieved_and_abandoned_objectives_have_their_own_status() -> None:
    assert scoring.status(0.2, 1.0, "achieved") == "achieved"
    assert scoring.status(0.2, 1.0, "abandoned") == "abandoned"
    assert scoring.status(0.2, 1.0, "active") == "off_track"


def test_confidence_rolls_up_by_rollup_mode() -> None:
    key_results = [0.7, None, 0.5]
    children = [0.4, None]
    assert scoring.rollup_confidence("key_results", key_results, children) == 0.5
    assert scoring.rollup_confidence("children", key_results, children) == 0.4
    assert scoring.rollup_confidence("both", key_results, children) == 0.4
    assert scoring.rollup_confidence("both", [0.3], [0.4]) == 0.3
    assert scoring.rollup_confidence("children", [0.3], []) is None
