"""Exact, hand-computed figures of the monitoring questions (issue 11): owners, engagement,
trends, attention, strategy, through the ledger, the projector and chDB.

The scenario (period 2026-Q4: 1 October to 31 December, 92 days; ``day(n)`` is 1 October + n
days, 12:00 UTC):

- objective ``o`` (unit co, theme growth, rollup both, owner ann, then dan from 1 November),
  its key results ``a`` (owner bob, cadence 7) and ``b`` (no owner of its own, cadence 14),
  and its child ``t`` (unit team, no owner) with key result ``c`` (cadence 7);
- objective ``x``: no theme, no parent (an orphan); theme ``quality``: no objective;
- check-ins: a 10 @day0, 20 @day7, 40 @day14, 50 @day40 (confidence .8 .7 .6 .4);
  b 20 @day3 (.9), 30 @day10 (.5); c 5 @day20 (.9), 90 @day41 retracted;
- the strategy reviewed (needs_work) on 5 October, its mission revised on 20 October.
"""

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from okr_ledger import query_json
from okr_ledger.http.dashboard import org_view
from okr_ledger.progress_render import ordered, warnings
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import monitoring, queries
from projections.queries import Moment
from projections.store import ProjectionStore
from schemas.errors import UnknownNameError
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, copy_prefix, day, utc

NOW = utc(2026, 11, 13, 12)
"""Friday 13 November, 12:00 UTC: day 43.5 of 92."""
BEFORE_HANDOVER = utc(2026, 10, 31)


def scenario(builder: LedgerBuilder) -> None:
    builder.skeleton(themes=("growth", "quality"), units=("co", "team"))
    builder.objective("o", theme_ids=["growth"], rollup="both", owner="ann")
    builder.objective("t", owner_unit_id="team", parent_objective_id="o")
    builder.objective("x")
    builder.key_result("a", "o", owner="bob")
    builder.key_result("b", "o", checkin_every_days=14)
    builder.key_result("c", "t")
    builder.check_in("a", 10, day(0), 0.8)
    builder.check_in("b", 20, day(3), 0.9)
    review = {"verdict": "needs_work", "notes": "Too many themes", "reviewer": "board"}
    builder.add("StrategyReviewed", review, utc(2026, 10, 5))
    builder.check_in("a", 20, day(7), 0.7)
    builder.check_in("b", 30, day(10), 0.5)
    builder.check_in("a", 40, day(14), 0.6)
    builder.add("StrategyRevised", {"mission": "M2", "reason": "focus"}, utc(2026, 10, 20))
    builder.check_in("c", 5, day(20), 0.9)
    builder.add(
        "ObjectiveOwnerChanged",
        {"objective_id": "o", "owner": "dan", "reason": "Ann moved on"},
        utc(2026, 11, 1),
    )
    builder.check_in("a", 50, day(40), 0.4)
    wrong = builder.check_in("c", 90, day(41), 0.2)
    builder.add(
        "CheckInRetracted",
        {"key_result_id": "c", "retracts_event_id": wrong, "reason": "wrong"},
        day(41, hour=13),
    )


@pytest.fixture
def monitored(builder: LedgerBuilder, store: ProjectionStore) -> ProjectionStore:
    scenario(builder)
    project(builder, store)
    return store


def _groups(rows: list[dict[str, object]]) -> dict[tuple[object, object], tuple[object, ...]]:
    return {
        (r["group"], r["id"]): (
            r["key_results"], r["check_ins_7d"], r["check_ins_28d"], r["within_cadence"],
            r["within_cadence_share"], r["last_check_in_at"],
        )
        for r in rows
    }  # fmt: skip


def test_owners_as_of_each_moment(monitored: ProjectionStore) -> None:
    now = monitoring.owners(monitored, ORG, 10_000)
    assert now == {("objective", "o"): "dan", ("key_result", "a"): "bob"}
    rows = monitored.rows(
        "SELECT subject_id, owner, reason FROM {db}.owner_versions ORDER BY sequence"
    )
    assert rows == [("o", "ann", None), ("a", "bob", None), ("o", "dan", "Ann moved on")]


def test_engagement_now(monitored: ProjectionStore) -> None:
    rows = monitoring.engagement(monitored, ORG, Moment(now=NOW))
    # 7 days: (6 Nov 12:00, 13 Nov 12:00]; 28 days: (16 Oct 12:00, 13 Nov 12:00]; the
    # retracted check-in of c counts nowhere. Stale at 13 Nov 12:00: a (3 days, cadence 7) no;
    # b (33 days, cadence 14) and c (23 days, cadence 7) yes.
    assert _groups(rows) == {
        ("owner", "bob"): (1, 1, 1, 1, 1.0, day(40)),
        ("owner", "dan"): (1, 0, 0, 0, 0.0, day(10)),  # b: its objective's owner
        ("owner", None): (1, 0, 1, 0, 0.0, day(20)),
        ("unit", "co"): (2, 1, 1, 1, 0.5, day(40)),
        ("unit", "team"): (1, 0, 1, 0, 0.0, day(20)),
    }
    assert [(r["group"], r["id"]) for r in rows] == [
        ("owner", "bob"), ("owner", "dan"), ("owner", None), ("unit", "co"), ("unit", "team"),
    ]  # fmt: skip
    assert rows[3]["key_result_ids"] == ["a", "b"]


def test_engagement_as_of_before_the_handover(monitored: ProjectionStore) -> None:
    rows = monitoring.engagement(monitored, ORG, Moment(as_of=BEFORE_HANDOVER, now=NOW))
    # ref = 31 Oct 00:00: 7 days (24 Oct, 31 Oct]: none; 28 days (3 Oct, 31 Oct]: a day7,
    # day14; b day3, day10; c day20. Every one stale (a 15.5 days, b 19.5, c 9.5).
    assert _groups(rows) == {
        ("owner", "bob"): (1, 0, 2, 0, 0.0, day(14)),
        ("owner", "ann"): (1, 0, 2, 0, 0.0, day(10)),
        ("owner", None): (1, 0, 1, 0, 0.0, day(20)),
        ("unit", "co"): (2, 0, 4, 0, 0.0, day(14)),
        ("unit", "team"): (1, 0, 1, 0, 0.0, day(20)),
    }


def test_engagement_of_a_period_and_at_a_business_time(monitored: ProjectionStore) -> None:
    at = utc(2026, 10, 12)  # 7 days (5 Oct, 12 Oct]: a day7, b day10; 28 days: also a, b day0/3
    rows = monitoring.engagement(monitored, ORG, Moment(at=at, now=NOW), period="2026-Q4")
    found = _groups(rows)
    assert found[("unit", "co")] == (2, 2, 4, 2, 1.0, day(10))
    assert found[("owner", "dan")] == (1, 1, 2, 1, 1.0, day(10))


def test_trend_points_are_week_ends_then_the_reference_time() -> None:
    assert monitoring.trend_points(NOW, 3) == [
        (date(2026, 10, 26), utc(2026, 11, 2)),
        (date(2026, 11, 2), utc(2026, 11, 9)),
        (date(2026, 11, 9), NOW),
    ]
    assert monitoring.trend_points(NOW, 2, daily=True) == [
        (date(2026, 11, 12), utc(2026, 11, 13)),
        (date(2026, 11, 13), NOW),
    ]


def test_trend_of_a_key_result_and_an_objective(monitored: ProjectionStore) -> None:
    moment = Moment(now=NOW)
    a = monitoring.trend(monitored, ORG, "a", moment, 5, count=4)
    assert [(p["at"], p["progress"], p["value"]) for p in a] == [
        (utc(2026, 10, 26), 0.4, 40),
        (utc(2026, 11, 2), 0.4, 40),
        (utc(2026, 11, 9), 0.4, 40),
        (NOW, 0.5, 50),
    ]
    assert a[0]["expected_progress"] == 25 / 92
    assert [p["confidence"] for p in a] == [0.6, 0.6, 0.6, 0.4]
    assert {p["granularity"] for p in a} == {"week"}
    o = monitoring.trend(monitored, ORG, "o", moment, 5, count=4)
    # rollup both: (a + b + t) / 3, t being c's 0.05 (its retracted 90 never counts)
    assert [p["progress"] for p in o] == pytest.approx([0.75 / 3] * 3 + [0.85 / 3], abs=1e-12)
    assert o[0]["subject_kind"] == "objective"
    early = monitoring.trend(monitored, ORG, "o", Moment(at=utc(2026, 10, 2), now=NOW), 5, count=2)
    # week of 21 Sep: nothing measured yet (0); 2 Oct: a 10 only -> 0.1 / 3
    assert [p["progress"] for p in early] == pytest.approx([0.0, 0.1 / 3], abs=1e-12)
    daily = monitoring.trend(monitored, ORG, "a", moment, 5, count=3, daily=True)
    assert [(p["bucket"], p["progress"]) for p in daily] == [
        (date(2026, 11, 11), 0.5), (date(2026, 11, 12), 0.5), (date(2026, 11, 13), 0.5),
    ]  # fmt: skip


def test_a_trend_point_is_progress_at_that_point(monitored: ProjectionStore) -> None:
    for point in monitoring.trend(monitored, ORG, "b", Moment(now=NOW), 5, count=5):
        at = queries.progress(monitored, ORG, Moment(at=point["at"], now=NOW), 5)
        (kr,) = [k for k in at.key_results if k["key_result_id"] == "b"]
        assert (point["progress"], point["status"]) == (kr["progress"], kr["status"])


def test_the_key_results_a_subjects_numbers_come_from(monitored: ProjectionStore) -> None:
    def under(subject: str, moment: Moment) -> list[str] | None:
        return queries.key_results_under(monitored, ORG, subject, moment)

    now = Moment(now=NOW)
    assert under("o", now) == ["a", "b", "c"]  # its own and its child t's
    assert under("t", now) == ["c"]
    assert under("b", now) == ["b"]
    assert under("x", now) == []
    assert under("nope", now) is None
    assert under("c", Moment(as_of=utc(2026, 9, 1), now=NOW)) is None  # not defined yet


@pytest.mark.parametrize("as_of", [None, BEFORE_HANDOVER])
def test_every_trend_point_of_every_subject_is_progress_at_that_point(
    monitored: ProjectionStore, as_of: datetime | None
) -> None:
    names = ("title", "progress", "expected_progress", "status", "value", "confidence")
    for subject in ("o", "t", "x", "a", "b", "c"):
        moment = Moment(as_of=as_of, now=NOW)
        trend = monitoring.trend(monitored, ORG, subject, moment, 5, count=6, daily=True)
        trend += monitoring.trend(monitored, ORG, subject, moment, 5, count=4)
        assert trend
        for point in trend:
            at = Moment(as_of=as_of, at=point["at"], now=NOW)
            found = queries.progress(monitored, ORG, at, 5)
            records = {kr["key_result_id"]: kr for kr in found.key_results}
            records |= {o["objective_id"]: o for o in found.objectives}
            expected = {name: records[subject].get(name) for name in names}
            assert {name: point[name] for name in names} == expected, (subject, point["at"])


def test_trend_as_of_equals_the_trend_of_the_prefix(
    builder: LedgerBuilder, monitored: ProjectionStore, open_store: StoreFactory, tmp_path: Path
) -> None:
    as_of = utc(2026, 11, 5)
    then = monitoring.trend(monitored, ORG, "o", Moment(as_of=as_of, now=NOW), 5, count=6)
    prefix = [e for e in builder.events() if datetime.fromisoformat(e.recorded_at) <= as_of]
    log = copy_prefix(prefix, tmp_path / "prefix.db")
    other = open_store("prefix")
    EmbeddedRunner(log, other, Projector()).catch_up()
    log.close()
    rebuilt = monitoring.trend(other, ORG, "o", Moment(at=as_of, now=NOW), 5, count=6)
    assert [p["at"] for p in then][-1] == as_of
    assert [(p["at"], p["progress"]) for p in then] == [(p["at"], p["progress"]) for p in rebuilt]


def test_trend_of_an_unknown_subject(monitored: ProjectionStore) -> None:
    with pytest.raises(UnknownNameError, match="nope"):
        monitoring.trend(monitored, ORG, "nope", Moment(now=NOW), 5)


def test_attention_now(monitored: ProjectionStore) -> None:
    items = monitoring.attention(monitored, ORG, Moment(now=NOW), 5)
    assert [i["item_id"] for i in items] == [
        "stale:b", "stale:c", "confidence_dropped:b", "orphan:x",
        "theme_uncovered:2026-Q4:quality",
    ]  # fmt: skip
    by_id = {i["item_id"]: i for i in items}
    assert (by_id["stale:b"]["owner"], by_id["stale:c"]["owner"]) == ("dan", None)
    dropped = by_id["confidence_dropped:b"]
    # b: 0.3 against 43.5 / 92 expected: 0.173 behind, at risk; confidence 0.9 then 0.5
    assert (dropped["status"], dropped["previous_confidence"], dropped["confidence"]) == (
        "at_risk", 0.9, 0.5,
    )  # fmt: skip


def test_attention_near_the_period_end(monitored: ProjectionStore) -> None:
    items = monitoring.attention(monitored, ORG, Moment(at=utc(2026, 12, 20), now=NOW), 5)
    (ending,) = [i for i in items if i["kind"] == "period_ending"]
    assert ending["item_id"] == "period_ending:2026-Q4"
    assert (ending["days_left"], ending["key_result_ids"]) == (11, ["a", "b", "c"])


def test_attention_as_of_before_the_later_check_ins(monitored: ProjectionStore) -> None:
    items = monitoring.attention(monitored, ORG, Moment(as_of=utc(2026, 10, 16), now=NOW), 5)
    # ref 16 Oct 00:00: a last 15 Oct (0.5 days), b 11 Oct (cadence 14), c none since 1 Oct
    # (15 days > 7): stale; c has no check-in yet, so nothing to compare confidences with.
    assert [i["item_id"] for i in items if i["kind"] == "stale"] == ["stale:c"]


def test_strategy_as_it_stood(monitored: ProjectionStore) -> None:
    then = monitoring.strategy(monitored, ORG, Moment(as_of=utc(2026, 10, 10)))
    assert then is not None
    assert (then["mission"], then["review_verdict"], then["reviewer"]) == (
        "M", "needs_work", "board",
    )  # fmt: skip
    now = monitoring.strategy(monitored, ORG, Moment())
    assert now is not None
    assert now["mission"] == "M2"
    assert now["active_theme_ids"] == ["growth", "quality"]
    assert monitoring.strategy(monitored, ORG, Moment(as_of=utc(2026, 8, 1))) is None
    trail = monitoring.strategy_history(monitored, ORG, Moment())
    assert [e["type"] for e in trail] == [
        "StrategyDefined", "ThemeAdded", "ThemeAdded", "StrategyReviewed", "StrategyRevised",
    ]  # fmt: skip


def test_sparkline() -> None:
    assert monitoring.sparkline([0, 0.5, 1, 1.2, -1]) == "▁▅██▁"


def test_a_key_result_whose_owner_was_cleared_has_its_objectives(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    """Its effective owner is its own, else its objective's: a key result whose owner was
    cleared (``owner`` null) has its objective's, in the commands and the views alike (the
    views gave it nobody until 2026-11-29)."""
    scenario(builder)
    builder.add(
        "KeyResultOwnerChanged",
        {"key_result_id": "a", "owner": None, "reason": "Bob left"},
        utc(2026, 11, 2),
    )
    project(builder, store)
    moment = Moment(at=NOW, now=NOW)
    assert monitoring.owners(store, ORG, 10_000)[("key_result", "a")] is None
    groups = _groups(monitoring.engagement(store, ORG, moment))
    assert groups[("owner", "dan")][0] == 2  # a and b: o's owner
    assert ("owner", "bob") not in groups
    view = store.rows(
        "SELECT id, key_results FROM {db}.engagement_at(at = {at:DateTime64(6, 'UTC')}) "
        "WHERE group = 'owner' ORDER BY id",
        {"at": NOW},
    )
    assert view == [("dan", 2), (None, 1)]


def test_the_views_agree_with_the_commands_now(monitored: ProjectionStore) -> None:
    """BI tools read the same answers (now: the views' reference time is the engine's clock)."""
    moment = Moment()
    engagement = monitoring.engagement(monitored, ORG, moment)
    columns = "group, id, key_results, check_ins_7d, check_ins_28d, within_cadence"
    view = monitored.rows(f"SELECT {columns} FROM {{db}}.engagement ORDER BY group, id")
    assert sorted(view, key=str) == sorted(
        [tuple(r[c] for c in columns.split(", ")) for r in engagement], key=str
    )
    items = monitoring.attention(monitored, ORG, moment, 5)
    view_items = monitored.rows("SELECT item_id, owner FROM {db}.attention ORDER BY item_id")
    assert view_items == sorted((i["item_id"], i.get("owner")) for i in items)
    for subject in ("a", "b", "c", "o", "t", "x"):  # key results, then objectives
        for daily in (False, True):
            trend = monitoring.trend(monitored, ORG, subject, moment, 5, count=4, daily=daily)
            points = monitored.rows(
                "SELECT subject_kind, bucket, progress, confidence"
                " FROM {db}.progress_trend WHERE subject_id = {s:String}"
                " AND granularity = {g:String} ORDER BY bucket DESC LIMIT 4",
                {"s": subject, "g": "day" if daily else "week"},
            )
            assert sorted(points) == [
                (p["subject_kind"], p["bucket"], p["progress"], p["confidence"]) for p in trend
            ]
        days = monitored.rows(
            "SELECT count() FROM {db}.progress_trend WHERE subject_id = {s:String}"
            " AND granularity = 'day'",
            {"s": subject},
        )
        elapsed = (moment.now.date() - date(2026, 10, 1)).days + 1
        assert days == [(max(0, min(92, elapsed)),)]  # each day of the period up to today


def test_the_trend_view_rolls_objectives_up_at_each_point(
    builder: LedgerBuilder, store: ProjectionStore
) -> None:
    """Objectives' series in ``progress_trend_at``, hand-computed, and equal to ``trend``:
    ``o`` (rollup both: (a + b + t) / 3, confidence the weakest of a, b and t) and ``p``
    (rollup children: its child ``q``'s, i.e. d's; its own key result e never counts)."""
    scenario(builder)
    builder.objective("p", theme_ids=["growth"], rollup="children")
    builder.objective("q", parent_objective_id="p")
    builder.key_result("d", "q")
    builder.key_result("e", "p")
    builder.check_in("d", 30, day(5), 0.7)
    builder.check_in("e", 80, day(6), 0.2)
    project(builder, store)
    moment = Moment(at=NOW, now=NOW)

    def series(subject: str, granularity: str) -> list[tuple[object, ...]]:
        return store.rows(
            "SELECT subject_kind, bucket, point_at, progress, confidence FROM"
            " {db}.progress_trend_at(as_of = NULL, at = {at:DateTime64(6, 'UTC')})"
            " WHERE subject_id = {s:String} AND granularity = {g:String} ORDER BY bucket",
            {"s": subject, "g": granularity, "at": NOW},
        )

    weeks = series("o", "week")
    # weeks from Monday 28 Sep; points 5, 12, 19, 26 Oct, 2, 9 Nov 00:00, then NOW
    assert [w[2] for w in weeks] == [
        utc(2026, 10, 5), utc(2026, 10, 12), utc(2026, 10, 19), utc(2026, 10, 26),
        utc(2026, 11, 2), utc(2026, 11, 9), NOW,
    ]  # fmt: skip
    assert {w[0] for w in weeks} == {"objective"}
    # 5 Oct: a .1 (.8), b .2 (.9); 12 Oct: a .2 (.7), b .3 (.5); 19 Oct: a .4 (.6);
    # 26 Oct on: c .05 (.9) too; NOW: a .5 (.4)
    assert [w[3] for w in weeks] == pytest.approx(
        [0.3 / 3, 0.5 / 3, 0.7 / 3, 0.75 / 3, 0.75 / 3, 0.75 / 3, 0.85 / 3], abs=1e-12
    )
    assert [w[4] for w in weeks] == [0.8, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4]
    days = series("o", "day")
    assert len(days) == 44  # 1 Oct to 13 Nov
    assert days[0][1:3] == (date(2026, 10, 1), utc(2026, 10, 2))
    assert days[0][3] == pytest.approx(0.1 / 3, abs=1e-12)
    assert days[-1][2:] == (NOW, pytest.approx(0.85 / 3, abs=1e-12), 0.4)
    p_days = series("p", "day")
    assert [(d[3], d[4]) for d in p_days[4:7]] == [(0.0, None), (0.3, 0.7), (0.3, 0.7)]
    for subject in ("o", "t", "x", "p", "q", "a", "d", "e"):
        for daily, granularity in ((False, "week"), (True, "day")):
            trend = monitoring.trend(store, ORG, subject, moment, 5, count=5, daily=daily)
            expected = [
                (p["subject_kind"], p["bucket"], p["at"], p["progress"], p["confidence"])
                for p in trend
            ]
            assert series(subject, granularity)[-5:] == expected


def test_progress_now_is_what_the_plain_views_answer(monitored: ProjectionStore) -> None:
    """The query commands work out expected progress, status, staleness and flags in Python;
    the views BI tools read, in SQL: both give the same answer (the views use the engine's
    clock, so expected progress is compared to within the time between the two reads)."""
    before = datetime.now(UTC)
    viewed = {
        "objectives": monitored.dicts(
            "SELECT * FROM {db}.objective_progress WHERE org_id = {org:String} "
            "ORDER BY objective_id",
            {"org": ORG},
        ),
        "key_results": monitored.dicts(
            "SELECT * FROM {db}.key_result_progress WHERE org_id = {org:String} "
            "ORDER BY objective_id, key_result_id",
            {"org": ORG},
        ),
    }
    found = queries.progress(monitored, ORG, Moment(now=before), 5)
    for kind, records in (("objectives", found.objectives), ("key_results", found.key_results)):
        assert [list(r) for r in records] == [list(v) for v in viewed[kind]]
        for record, view in zip(records, viewed[kind], strict=True):
            expected = record.pop("expected_progress")
            assert expected == pytest.approx(view.pop("expected_progress"), abs=1e-6)
            assert record == view


def _page_alone(store: ProjectionStore, moment: Moment) -> dict[str, object]:
    """The dashboard's org page's sections, each from its own query, nothing shared."""
    found = query_json.progress(store, ORG, moment, 2)
    coverage = queries.coverage(store, ORG, moment)
    return {
        "tree": list(ordered(found)),
        "warnings": warnings(found.objectives, coverage),
        "stale": [kr for kr in found.key_results if kr["stale"] and not kr["retired"]],
        "results": query_json.results_lines(store, ORG, moment),
        "attention": query_json.attention_lines(store, ORG, moment, 2),
        "engagement": [
            row
            for row in query_json.engagement_lines(store, ORG, moment)
            if row["group"] == "owner"
        ],
        "strategy": monitoring.strategy(store, ORG, moment),
    }


def test_the_org_page_read_together_shows_what_each_query_gives_alone(
    monitored: ProjectionStore,
) -> None:
    """The page reads its sections together (one :class:`queries.Reads`: the ledger position
    resolved once, what several sections show read once), as known now and as of earlier."""
    now = utc(2026, 11, 20)
    moments = [Moment(now=now)] + [Moment(as_of=day(n, hour=12), now=now) for n in (3, 14, 20, 41)]
    attention = []
    for moment in moments:
        page = org_view(monitored, ORG, moment, 2)
        expected = _page_alone(monitored, moment)
        assert {name: page[name] for name in expected} == expected, moment
        attention.append(page["attention"])
    assert len({repr(items) for items in attention}) > 2  # the moments differ: not one answer
