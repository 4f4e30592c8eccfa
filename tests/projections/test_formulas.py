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
    {sql.stale_sql(REF)}, {sql.expected_sql(REF, kind=None)}
FROM (SELECT {{kind:String}} AS kind, {{progress:Float64}} AS progress,
    {{starts:Date32}} AS period_starts_on, {{ends:Date32}} AS period_ends_on,
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
) -> None:
    ends = starts + timedelta(days=length)
    params = {"kind": kind, "progress": progress, "starts": starts, "ends": ends, "ref": ref,
              "last": last, "cadence": cadence, "retired": retired}  # fmt: skip
    [(expected, status, stale, objective_expected)] = store.rows(QUERY, params)
    python_expected = scoring.expected_progress(kind, starts, ends, ref)
    assert expected == python_expected
    assert objective_expected == scoring.expected_progress(None, starts, ends, ref)
    assert status == scoring.status(progress, python_expected)
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
