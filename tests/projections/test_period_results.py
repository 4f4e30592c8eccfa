"""Closing a period grades it: exact, hand-computed grades at the close, a close frozen until a
reopening, a second close grading anew, and the earlier grades as of their time.

The cascade (period 2026-Q4: 1 October to 31 December, 92 days):

    top (children)          a (key_results, weight 1): k1 increase 0 -> 100, k2 milestone due 15 Nov
                            b (both, weight 3):        k3 decrease 50 -> 10 due 30 Nov
                                                       b1 (key_results, weight 1, achieved):
                                                           k4 stay_above 5 -> 7
"""

from datetime import datetime

import pytest

from events.outcomes import Rejection
from events.reasons import ReasonCode
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import queries
from projections.queries import Moment
from projections.store import ProjectionStore
from tests.projections.ledgers import ORG, PERIOD, LedgerBuilder, day, utc

CLOSE_1 = utc(2026, 12, 1)
REOPEN = utc(2026, 12, 2)
CLOSE_2 = utc(2026, 12, 3)


def _build(builder: LedgerBuilder) -> None:
    builder.skeleton()
    builder.objective("top", rollup="children")
    builder.objective("a", parent_objective_id="top")
    builder.objective("b", parent_objective_id="top", rollup="both", weight=3)
    builder.objective("b1", parent_objective_id="b")
    builder.key_result("k1", "a")
    builder.key_result("k2", "a", kind="milestone", start=0, target=1, due_on="2026-11-15",
                       unit="")  # fmt: skip
    builder.key_result("k3", "b", kind="decrease", start=50, target=10, due_on="2026-11-30")
    builder.key_result("k4", "b1", kind="stay_above", start=5, target=7)
    builder.check_in("k1", 60, day(40), confidence=0.9)
    builder.check_in("k2", 1, day(44), confidence=0.6)
    builder.check_in("k4", 8, day(45), confidence=0.3)
    builder.add("ObjectiveStatusChanged", {"objective_id": "b1", "status": "achieved"}, day(46))
    builder.check_in("k3", 30, day(50), confidence=0.4)
    builder.add("PeriodClosed", {"period_id": PERIOD}, CLOSE_1)


GRADE = ("value", "target", "progress", "attainment", "expected_progress", "status",
         "confidence")  # fmt: skip


def _graded(store: ProjectionStore, moment: Moment) -> dict[str, dict[str, object]]:
    return {
        r["subject_id"]: {name: r[name] for name in GRADE}
        for r in queries.period_results(store, ORG, moment)
    }


def _project(builder: LedgerBuilder, store: ProjectionStore) -> None:
    EmbeddedRunner(builder.log, store, Projector()).catch_up()


def test_grades_at_the_close_are_exact(builder: LedgerBuilder, store: ProjectionStore) -> None:
    _build(builder)
    _project(builder, store)
    expected_at_close = 61 / 92  # 1 December: 61 of the period's 92 days
    a = (1 * 0.6 + 1 * 1.0) / 2
    b = (1 * 0.5 + 1 * 1.0) / 2
    assert _graded(store, Moment()) == {
        # objectives: progress rolled up, confidence the weakest of what the rollup counts
        "a": {"value": None, "target": None, "progress": a, "attainment": None,
              "expected_progress": expected_at_close, "status": "on_track", "confidence": 0.6},
        "b": {"value": None, "target": None, "progress": b, "attainment": None,
              "expected_progress": expected_at_close, "status": "on_track", "confidence": 0.3},
        "b1": {"value": None, "target": None, "progress": 1.0, "attainment": None,
               "expected_progress": expected_at_close, "status": "achieved", "confidence": 0.3},
        "top": {"value": None, "target": None, "progress": (1 * a + 3 * b) / 4,
                "attainment": None, "expected_progress": expected_at_close,
                "status": "on_track", "confidence": 0.3},
        # key results: linear to the period's end; k3 to its due date (30 Nov: over, so 1)
        "k1": {"value": 60.0, "target": 100.0, "progress": 0.6, "attainment": 0.6,
               "expected_progress": expected_at_close, "status": "on_track",
               "confidence": 0.9},
        "k2": {"value": 1.0, "target": 1.0, "progress": 1.0, "attainment": 1.0,
               "expected_progress": 1.0, "status": "on_track", "confidence": 0.6},
        "k3": {"value": 30.0, "target": 10.0, "progress": 0.5, "attainment": 0.5,
               "expected_progress": 1.0, "status": "off_track", "confidence": 0.4},
        "k4": {"value": 8.0, "target": 7.0, "progress": 1.0, "attainment": 1.0,
               "expected_progress": 1.0, "status": "on_track", "confidence": 0.3},
    }  # fmt: skip
    rows = queries.period_results(store, ORG, Moment())
    assert [r["subject_id"] for r in rows] == ["a", "b", "b1", "top", "k1", "k2", "k3", "k4"]
    assert {r["closed_at"] for r in rows} == {CLOSE_1}
    assert {r["period_name"] for r in rows} == {"Q4"}
    assert next(r for r in rows if r["subject_id"] == "k2")["unit"] == ""


def test_the_view_gives_the_same_grades(builder: LedgerBuilder, store: ProjectionStore) -> None:
    _build(builder)
    _project(builder, store)
    viewed = store.dicts("SELECT * FROM {db}.period_results WHERE org_id = 'acme'")
    assert viewed == queries.period_results(store, ORG, Moment())


def test_a_closed_period_is_frozen_until_reopened_then_graded_anew(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    _build(builder)
    refused = builder.submit(
        "CheckInRecorded", {"key_result_id": "k1", "value": 80, "confidence": 0.5}, CLOSE_1
    )
    assert isinstance(refused, Rejection)
    assert refused.reason is ReasonCode.INVALID_STATE
    assert f"period '{PERIOD}' is closed" in refused.message
    builder.add("PeriodReopened", {"period_id": PERIOD, "reason": "late numbers"}, REOPEN)
    builder.check_in("k1", 80, utc(2026, 12, 2, 12), confidence=0.5)
    builder.add("PeriodClosed", {"period_id": PERIOD}, CLOSE_2)
    _project(builder, store)

    now = _graded(store, Moment())
    a = (1 * 0.8 + 1 * 1.0) / 2
    b = (1 * 0.5 + 1 * 1.0) / 2
    assert now["k1"] == {"value": 80.0, "target": 100.0, "progress": 0.8, "attainment": 0.8,
                         "expected_progress": 63 / 92, "status": "on_track",
                         "confidence": 0.5}  # fmt: skip
    assert (now["a"]["progress"], now["a"]["confidence"]) == (a, 0.5)
    assert (now["top"]["progress"], now["top"]["confidence"]) == ((1 * a + 3 * b) / 4, 0.3)
    assert {r["closed_at"] for r in queries.period_results(store, ORG, Moment())} == {CLOSE_2}

    # as of their time, the first close's grades; while reopened, none
    first = _graded(store, Moment(as_of=datetime(2026, 12, 1, 12, tzinfo=CLOSE_1.tzinfo)))
    assert first["k1"]["value"] == 60.0
    assert first["a"]["progress"] == (1 * 0.6 + 1 * 1.0) / 2
    assert _graded(store, Moment(as_of=utc(2026, 12, 2, 6))) == {}
    assert _graded(store, Moment(as_of=utc(2026, 11, 30))) == {}
    # both closes' grades stay in the table
    closes = store.rows("SELECT DISTINCT closed_at FROM {db}.period_grades ORDER BY closed_at")
    assert [c for (c,) in closes] == [CLOSE_1, CLOSE_2]


def test_a_correction_by_source_event_id_is_projected(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.key_result("k", "o")
    builder.check_in("k", 40, day(10))  # submitted as source "test", source_event_id "e7"
    source_id = builder.events()[-1].source_event_id
    assert source_id is not None
    builder.add(
        "CheckInCorrected",
        {"key_result_id": "k", "corrects_source_event_id": source_id, "value": 45,
         "reason": "typo"},
        day(11),
    )  # fmt: skip
    builder.add(
        "CheckInRetracted",
        {"key_result_id": "k", "retracts_source_event_id": source_id, "reason": "wrong KR"},
        day(12),
    )
    _project(builder, store)
    [check_in] = queries.check_ins(store, ORG, "k", Moment())
    assert (check_in["value"], check_in["original_value"]) == (45.0, 40.0)
    assert (check_in["corrected"], check_in["retracted"]) == (True, True)
    [kr] = queries.key_results(store, ORG, Moment(now=day(13)))
    assert (kr["value"], kr["check_in_count"]) == (0.0, 0)


@pytest.mark.parametrize(
    ("rollup", "confidence"), [("key_results", 0.7), ("children", 0.4), ("both", 0.4)]
)
def test_confidence_rolls_up_by_the_rollup_mode_now_and_as_of(
    builder: LedgerBuilder, store: ProjectionStore, rollup: str, confidence: float
) -> None:
    """Parent p has key result kp (0.7) and child c with key result kc (0.4)."""
    builder.skeleton()
    builder.objective("p", rollup=rollup)
    builder.objective("c", parent_objective_id="p")
    builder.key_result("kp", "p")
    builder.key_result("kc", "c")
    builder.check_in("kp", 10, day(5), confidence=0.7)
    builder.check_in("kc", 10, day(6), confidence=0.4)
    _project(builder, store)
    now = {o["objective_id"]: o for o in queries.objectives(store, ORG, Moment(), 5)}
    assert now["p"]["confidence"] == confidence
    later = utc(2026, 12, 1)
    as_of = {o["objective_id"]: o for o in queries.objectives(store, ORG, Moment(as_of=later), 5)}
    assert as_of["p"]["confidence"] == confidence
    at = queries.progress(store, ORG, Moment(at=day(7)), 5).objectives
    assert next(o for o in at if o["objective_id"] == "p")["confidence"] == confidence
    viewed = store.dicts("SELECT confidence FROM {db}.objective_progress WHERE objective_id = 'p'")
    assert viewed == [{"confidence": confidence}]
    for arguments in ("", "at = '2026-10-08 00:00:00'", "as_of = '2026-12-01 00:00:00'"):
        twin = store.dicts(
            f"SELECT objective_id, confidence FROM {{db}}.objective_progress_at({arguments}) "
            "ORDER BY objective_id"
        )
        assert twin == [
            {"objective_id": "c", "confidence": 0.4},
            {"objective_id": "p", "confidence": confidence},
        ], arguments
    before = store.dicts(  # as of before any check-in: no confidence anywhere
        "SELECT confidence FROM {db}.objective_progress_at(at = '2026-10-03 00:00:00')"
    )
    assert before == [{"confidence": None}, {"confidence": None}]
