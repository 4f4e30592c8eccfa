"""Exact figures for hand-computed scenarios, through the ledger, the projector and chDB."""

from datetime import datetime

import pytest

from projections import queries
from projections.queries import Moment, Record
from projections.store import ProjectionStore
from tests.projections.conftest import project
from tests.projections.ledgers import ORG, LedgerBuilder, day, utc

LATER = utc(2026, 11, 23, 12)


def progress(
    store: ProjectionStore, moment: Moment | None = None, limit: int = 5
) -> tuple[dict[str, Record], dict[str, Record]]:
    found = queries.progress(store, ORG, moment or Moment(now=LATER), limit)
    return (
        {o["objective_id"]: o for o in found.objectives},
        {k["key_result_id"]: k for k in found.key_results},
    )


def test_every_key_result_kind_and_weights(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    builder.objective("o", theme_ids=["growth"])
    specs = {
        "inc": ({"kind": "increase", "start": 10, "target": 50, "weight": 2}, 30, 0.9),
        "dec": ({"kind": "decrease", "start": 100, "target": 20}, 120, 0.3),
        "above": ({"kind": "stay_above", "start": 90, "target": 95}, 96, 0.8),
        "below": ({"kind": "stay_below", "start": 80, "target": 50}, 55, 0.6),
        "ms": ({"kind": "milestone", "start": 0, "target": 1}, 1, 0.7),
        "over": ({"kind": "increase", "start": 0, "target": 10}, 15, 0.5),
    }
    for kr_id, (spec, _value, _confidence) in specs.items():
        builder.key_result(kr_id, "o", **spec)
    builder.check_in("inc", 20, day(5), 0.2)
    for kr_id, (_spec, value, confidence) in specs.items():
        builder.check_in(kr_id, value, day(10), confidence)
    project(builder, store)

    objectives, krs = progress(store)
    expected = {
        "inc": (30, 0.5, 0.5),
        "dec": (120, 0.0, -0.25),
        "above": (96, 1.0, 1.0),
        "below": (55, 0.0, 0.0),
        "ms": (1, 1.0, 1.0),
        "over": (15, 1.0, 1.5),
    }
    for kr_id, (value, kr_progress, attainment) in expected.items():
        assert (krs[kr_id]["value"], krs[kr_id]["progress"], krs[kr_id]["attainment"]) == (
            value,
            kr_progress,
            attainment,
        ), kr_id
    assert objectives["o"]["progress"] == pytest.approx(4 / 7, abs=1e-15)
    assert objectives["o"]["confidence"] == 0.3
    assert krs["inc"]["check_in_count"] == 2


def test_no_check_in_sits_at_start(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.key_result("inc", "o", start=10, target=20)
    builder.key_result("above", "o", kind="stay_above", start=96, target=95)
    project(builder, store)
    objectives, krs = progress(store)
    assert (krs["inc"]["value"], krs["inc"]["progress"], krs["inc"]["confidence"]) == (
        10,
        0.0,
        None,
    )
    assert krs["inc"]["last_check_in_at"] is None
    assert krs["above"]["progress"] == 1.0  # the start already holds
    assert objectives["o"]["progress"] == 0.5
    assert objectives["o"]["confidence"] is None


def test_rollup_modes(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    builder.objective("p", rollup="children", theme_ids=["growth"])
    for child, weight, value in (("c1", 1, 25), ("c2", 3, 75), ("c3", 5, 100)):
        builder.objective(child, parent_objective_id="p", weight=weight)
        builder.key_result(f"kr-{child}", child)
        builder.check_in(f"kr-{child}", value, day(3))
    builder.add("ObjectiveStatusChanged", {"objective_id": "c3", "status": "abandoned"}, day(4))
    builder.objective("q", rollup="both", theme_ids=["growth"])
    builder.key_result("kr-q", "q")
    builder.check_in("kr-q", 50, day(3))
    builder.objective("c4", parent_objective_id="q", weight=2)
    builder.key_result("kr-c4", "c4")
    builder.check_in("kr-c4", 80, day(3))
    builder.objective("r")
    builder.key_result("r1", "r")
    builder.key_result("r2", "r")
    builder.check_in("r1", 40, day(3))
    builder.check_in("r2", 100, day(3))
    builder.add("KeyResultRetired", {"key_result_id": "r2", "reason": "dropped"}, day(4))
    builder.objective("empty")
    builder.objective("childless", rollup="children")
    project(builder, store)

    objectives, _krs = progress(store)
    assert objectives["p"]["progress"] == 0.625  # (1·0.25 + 3·0.75) / 4, c3 abandoned
    assert objectives["q"]["progress"] == pytest.approx(0.7, abs=1e-15)  # (0.5 + 2·0.8) / 3
    assert objectives["r"]["progress"] == 0.4  # r2 is retired
    assert objectives["empty"]["progress"] == 0.0
    assert objectives["childless"]["progress"] == 0.0
    assert objectives["p"]["child_count"] == 2
    assert objectives["r"]["key_result_count"] == 1


def test_target_revision_scores_each_check_in_against_the_target_in_force(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.key_result("t", "o", start=0, target=100)
    builder.check_in("t", 40, day(10))
    revise = {"key_result_id": "t", "target": 80, "reason": "scope cut"}
    builder.add("KeyResultTargetRevised", revise, day(20))
    builder.check_in("t", 60, day(30))
    builder.check_in("t", 50, day(15), recorded=day(31))  # late: measured before the revision
    before_backdated = day(31, hour=23)
    backdated = {"key_result_id": "t", "target": 50, "reason": "agreed earlier"}
    builder.add("KeyResultTargetRevised", backdated, day(5), recorded=day(32))
    project(builder, store)

    _objectives, krs = progress(store)
    assert (krs["t"]["value"], krs["t"]["target"], krs["t"]["progress"]) == (60, 80, 0.75)
    assert krs["t"]["current_target"] == 80  # the day-20 revision is the latest in business time
    history = queries.check_ins(store, ORG, "t", Moment(now=LATER))
    scored = [(c["value"], c["target"], c["progress"]) for c in history]
    assert scored == [(40, 50, 0.8), (50, 50, 1.0), (60, 80, 0.75)]

    known_before = queries.check_ins(store, ORG, "t", Moment(as_of=before_backdated))
    assert [(c["value"], c["target"]) for c in known_before] == [(40, 100), (50, 100), (60, 80)]

    _objectives, at_day_16 = progress(store, Moment(at=day(16)))
    assert (at_day_16["t"]["value"], at_day_16["t"]["target"]) == (50, 50)
    assert at_day_16["t"]["progress"] == 1.0
    _objectives, at_day_1 = progress(store, Moment(at=day(1)))
    assert (at_day_1["t"]["value"], at_day_1["t"]["target"], at_day_1["t"]["progress"]) == (
        0,
        100,
        0.0,
    )


def test_corrections_retractions_and_late_check_ins(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.key_result("k", "o")
    builder.check_in("k", 30, day(10), 0.9)
    typo = builder.check_in("k", 90, day(20), 0.9)
    before_correction = builder.now
    fix = {"key_result_id": "k", "corrects_event_id": typo, "value": 45, "confidence": 0.4,
           "reason": "typo"}  # fmt: skip
    builder.add("CheckInCorrected", fix, day(21))
    wrong = builder.check_in("k", 60, day(25))
    retract = {"key_result_id": "k", "retracts_event_id": wrong, "reason": "wrong survey"}
    builder.add("CheckInRetracted", retract, day(25, hour=15))
    builder.check_in("k", 99, day(5), recorded=day(26))  # late, and older in business time
    project(builder, store)

    objectives, krs = progress(store)
    k = krs["k"]
    assert (k["value"], k["progress"], k["confidence"]) == (45, 0.45, 0.4)
    assert k["last_check_in_at"] == day(20)  # a correction keeps the corrected check-in's time
    assert k["last_check_in_id"] == typo
    assert k["check_in_count"] == 3
    assert objectives["o"]["progress"] == 0.45

    history = {c["check_in_id"]: c for c in queries.check_ins(store, ORG, "k", Moment())}
    assert (history[typo]["value"], history[typo]["original_value"]) == (45, 90)
    assert history[typo]["corrected"]
    assert not history[typo]["retracted"]
    assert history[wrong]["retracted"]
    assert history[wrong]["reason"] == "wrong survey"

    _objectives, known_then = progress(store, Moment(as_of=before_correction, now=LATER))
    assert (known_then["k"]["value"], known_then["k"]["progress"]) == (90, 0.9)


@pytest.mark.parametrize(
    ("ref", "stale_checked", "stale_silent"),
    [
        (day(17, hour=12), False, True),  # exactly 7 days after the last check-in: not yet
        (day(17, hour=13), True, True),
        (utc(2026, 10, 8, 0, 0), False, False),  # the silent one: 7 days since the period began
        (utc(2026, 10, 8, 0, 1), False, True),
        (utc(2027, 2, 1), False, False),  # counted only up to the period's end
    ],
)
def test_stale_detection(
    builder: LedgerBuilder,
    store: ProjectionStore,
    ref: datetime,
    stale_checked: bool,
    stale_silent: bool,
) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.key_result("checked", "o", checkin_every_days=7)
    builder.key_result("silent", "o", checkin_every_days=7)
    builder.key_result("retired", "o", checkin_every_days=1)
    builder.add("KeyResultRetired", {"key_result_id": "retired", "reason": "x"}, day(0))
    builder.check_in("checked", 10, day(10))
    if ref > utc(2027, 1, 1):
        builder.check_in("checked", 20, utc(2026, 12, 30))
        builder.check_in("silent", 20, utc(2026, 12, 29))
    project(builder, store)
    _objectives, krs = progress(store, Moment(now=ref))
    assert (krs["checked"]["stale"], krs["silent"]["stale"]) == (stale_checked, stale_silent)
    assert krs["retired"]["stale"] is False


def test_expected_progress_and_status(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    builder.objective("o")
    for kr_id, value in (("ahead", 50), ("risk", 30), ("behind", 20)):
        builder.key_result(kr_id, "o")
        builder.check_in(kr_id, value, day(40))
    builder.key_result("hold", "o", kind="stay_above", start=0, target=10)
    builder.check_in("hold", 9, day(40))
    project(builder, store)
    ref = utc(2026, 11, 15)  # 45 of the period's 92 days
    objectives, krs = progress(store, Moment(now=ref))
    assert krs["ahead"]["expected_progress"] == 45 / 92
    assert [krs[k]["status"] for k in ("ahead", "risk", "behind")] == [
        "on_track",  # 0.489 - 0.5 <= 0.10
        "at_risk",  # 0.489 - 0.3 = 0.189
        "off_track",  # 0.489 - 0.2 = 0.289
    ]
    assert (krs["hold"]["expected_progress"], krs["hold"]["status"]) == (1.0, "off_track")
    assert objectives["o"]["expected_progress"] == 45 / 92


def test_cascade_flags_and_reach(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton(themes=("growth", "ops", "gone"), units=("co", "team"))
    builder.add(
        "PeriodDefined",
        {"period_id": "2027-Q1", "name": "Q1", "starts_on": "2027-01-01",
         "ends_on": "2027-03-31"},
        utc(2026, 9, 1),
    )  # fmt: skip
    builder.objective("top", theme_ids=["growth"])
    builder.objective("mid", parent_objective_id="top", owner_unit_id="team")
    builder.objective("leaf", parent_objective_id="mid", owner_unit_id="team")
    builder.objective("lonely")
    builder.objective("retiring", theme_ids=["gone"])
    builder.add("ThemeRetired", {"theme_id": "gone", "reason": "done"}, day(1))
    builder.objective("doomed", theme_ids=["ops"])
    builder.objective("under-doomed", parent_objective_id="doomed", owner_unit_id="team")
    builder.add("ObjectiveStatusChanged", {"objective_id": "doomed", "status": "abandoned"}, day(2))
    builder.objective("next-q", parent_objective_id="top", period_id="2027-Q1")
    link = {"objective_id": "leaf", "linked_objective_id": "lonely", "relation": "depends_on"}
    builder.add("ObjectiveLinked", link, day(3))
    project(builder, store)

    flags = {o["objective_id"]: o for o in queries.objectives(store, ORG, Moment(), 5)}
    assert flags["leaf"]["ancestor_ids"] == ["mid", "top"]
    assert flags["leaf"]["depth"] == 2
    assert flags["leaf"]["reached_theme_ids"] == ["growth"]
    assert flags["leaf"]["depends_on"] == ["lonely"]
    assert flags["lonely"]["flags"] == ["orphan"]
    assert flags["retiring"]["flags"] == ["orphan"]  # its only theme was retired
    assert flags["under-doomed"]["flags"] == ["parent_inactive"]  # still reaches ops
    assert flags["next-q"]["flags"] == ["parent_inactive"]  # parent in another period
    assert flags["doomed"]["flags"] == []  # abandoned objectives are not flagged
    assert flags["top"]["flags"] == []
    # co has top, lonely, retiring, doomed (abandoned: not counted) in 2026-Q4: 3 objectives
    assert flags["top"]["unit_objective_count"] == 3
    assert [o for o in flags.values() if "over_focus" in o["flags"]] == []

    tight = {o["objective_id"]: o for o in queries.objectives(store, ORG, Moment(), 2)}
    assert tight["top"]["flags"] == ["over_focus"]
    assert tight["lonely"]["flags"] == ["orphan", "over_focus"]
    assert tight["mid"]["flags"] == ["over_focus"]  # team has mid, leaf, under-doomed: 3 > 2
    assert tight["next-q"]["flags"] == ["parent_inactive"]  # alone in co in 2027-Q1
    assert tight["leaf"]["unit_objective_count"] == 3

    coverage = {(c["period_id"], c["theme_id"]): c for c in queries.coverage(store, ORG, Moment())}
    assert set(coverage) == {(p, th) for p in ("2026-Q4", "2027-Q1") for th in ("growth", "ops")}
    growth = coverage[("2026-Q4", "growth")]
    assert (growth["objective_count"], growth["direct_objective_count"]) == (3, 1)
    assert coverage[("2026-Q4", "ops")]["objective_count"] == 1  # under-doomed, via doomed
    assert coverage[("2027-Q1", "ops")]["uncovered"] is True
    assert coverage[("2027-Q1", "growth")]["objective_count"] == 1


def test_over_focus_from_default_settings(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    for n in range(6):
        builder.objective(f"o{n}", theme_ids=["growth"])
    project(builder, store)
    flags = {o["objective_id"]: o["flags"] for o in queries.objectives(store, ORG, Moment(), 5)}
    assert set(map(tuple, flags.values())) == {("over_focus",)}
    view = store.rows("SELECT objective_id, flags FROM objective_progress ORDER BY objective_id")
    assert [list(f) for _id, f in view] == [["over_focus"]] * 6
    store.set_setting("over_focus_limit", "6")
    view = store.rows("SELECT DISTINCT flags FROM objective_progress")
    assert [list(f) for (f,) in view] == [[]]


def test_history_of_an_objective(builder: LedgerBuilder, store: ProjectionStore) -> None:
    builder.skeleton()
    builder.objective("o")
    builder.objective("other")
    builder.key_result("k", "o")
    builder.check_in("k", 5, day(1))
    builder.add(
        "ObjectiveLinked",
        {"objective_id": "other", "linked_objective_id": "o", "relation": "contributes_to"},
        day(2),
    )
    project(builder, store)
    events = queries.history(store, ORG, "o", Moment())
    assert [e["type"] for e in events] == ["ObjectiveCreated", "KeyResultDefined",
                                           "ObjectiveLinked"]  # fmt: skip
    first = events[0]
    assert first["subject_kind"] == "objective"
    assert first["occurred_at"] == utc(2026, 9, 2)
    assert len(first["hash"]) == 64
    assert [e["type"] for e in queries.history(store, ORG, "k", Moment())] == [
        "KeyResultDefined",
        "CheckInRecorded",
    ]
