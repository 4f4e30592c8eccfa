"""The projection properties' workloads and answers: random scripts of an org's life (objectives,
key results, check-ins, corrections, retractions), every answer the queries and views give at a
moment, and the bodies of the properties that the chDB and served-store tests both run."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okr_ledger.projection_compare import fingerprint
from processors import tables as t
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import monitoring, queries
from projections.queries import Moment
from projections.store import ProjectionStore
from schemas.errors import UnknownNameError
from tests.projections.ledgers import (
    ORG,
    PERIOD,
    LedgerBuilder,
    copy_prefix,
    day,
    reset,
    utc,
)

OBJECTIVES = ("o0", "o1", "o2", "o3")


KEY_RESULTS = ("k0", "k1", "k2", "k3", "k4")


KINDS = {
    "increase": (0, 10),
    "decrease": (10, 0),
    "stay_above": (5, 7),
    "stay_below": (5, 3),
    "milestone": (0, 1),
}


PROPERTY_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


Op = tuple[Any, ...]


objective_specs = st.tuples(
    st.integers(-1, 3),  # parent: an earlier objective, or none
    st.sampled_from(("key_results", "children", "both")),
    st.sampled_from((1, 2, 3)),
    st.lists(st.sampled_from(("growth", "ops")), max_size=2, unique=True),
    st.sampled_from(("co", "team")),
)


key_result_specs = st.tuples(
    st.integers(0, len(OBJECTIVES) - 1),
    st.sampled_from(sorted(KINDS)),
    st.sampled_from((1, 2)),
    st.sampled_from((1, 7)),
    st.sampled_from((None, "2026-11-15")),  # due_on
)


check_in_ops = st.tuples(
    st.just("check_in"),
    st.sampled_from(KEY_RESULTS),
    st.integers(0, 12),
    st.integers(0, 60),
    st.sampled_from((0.2, 0.5, 0.9)),
)


ops = st.one_of(
    *[check_in_ops] * 8,
    st.tuples(st.just("correct"), st.integers(0, 20), st.integers(0, 12)),
    st.tuples(st.just("retract"), st.integers(0, 20)),
    st.tuples(
        st.just("revise"), st.sampled_from(KEY_RESULTS), st.integers(0, 20), st.integers(0, 60)
    ),
    st.tuples(st.just("retire"), st.sampled_from(KEY_RESULTS)),
    st.tuples(
        st.just("status"), st.sampled_from(OBJECTIVES), st.sampled_from(("achieved", "abandoned"))
    ),
    st.tuples(st.just("align"), st.sampled_from(OBJECTIVES), st.sampled_from(OBJECTIVES)),
    st.tuples(st.just("link"), st.sampled_from(OBJECTIVES), st.sampled_from(OBJECTIVES)),
    st.tuples(st.just("retire_theme"), st.sampled_from(("growth", "ops"))),
    st.tuples(
        st.just("owner"),
        st.sampled_from((*OBJECTIVES, *KEY_RESULTS)),
        st.sampled_from(("ann", "bob", None)),
    ),
    st.tuples(st.just("close")),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("correct_by_source"), st.integers(0, 20), st.integers(0, 12)),
)


scripts = st.tuples(
    st.lists(objective_specs, min_size=len(OBJECTIVES), max_size=len(OBJECTIVES)),
    st.lists(key_result_specs, min_size=len(KEY_RESULTS), max_size=len(KEY_RESULTS)),
    st.lists(st.tuples(ops, st.integers(1, 72)), min_size=8, max_size=30),
)


Script = tuple[list[Any], list[Any], list[tuple[Op, int]]]


def build(builder: LedgerBuilder, script: Script) -> None:
    """A cascade, then random operations; those the ledger's rules refuse are just rejected."""
    objective_list, key_result_list, operations = script
    builder.skeleton(themes=("growth", "ops"), units=("co", "team"))
    for n, (parent, rollup, weight, themes, unit) in enumerate(objective_list):
        fields: dict[str, Any] = {
            "rollup": rollup,
            "weight": weight,
            "theme_ids": themes,
            "owner_unit_id": unit,
        }
        if 0 <= parent < n:
            fields["parent_objective_id"] = OBJECTIVES[parent]
        builder.objective(OBJECTIVES[n], **fields)
    for n, (objective, kr_kind, weight, cadence, due_on) in enumerate(key_result_list):
        start, target = KINDS[kr_kind]
        due = {"due_on": due_on} if due_on else {}
        builder.key_result(
            KEY_RESULTS[n],
            OBJECTIVES[objective],
            kind=kr_kind,
            start=start,
            target=target,
            weight=weight,
            checkin_every_days=cadence,
            **due,
        )
    builder.now = day(0, hour=0)
    check_ins: list[str] = []
    source_ids: dict[str, str] = {}
    for op, hours in operations:
        now = builder.now + timedelta(hours=hours)

        def occurred(day_number: int, now: datetime = now) -> datetime:
            return min(day(day_number), now)

        def submit(
            type_name: str, data: dict[str, Any], when: datetime, now: datetime = now
        ) -> Any:
            return builder.submit(type_name, data, when, recorded=now)

        kind = op[0]
        if kind == "check_in":
            _, kid, value, when, confidence = op
            outcome = submit(
                "CheckInRecorded",
                {"key_result_id": kid, "value": value, "confidence": confidence},
                occurred(when),
            )
            if hasattr(outcome, "event"):
                check_ins.append(outcome.event.event_id)
                source_ids[outcome.event.event_id] = outcome.event.source_event_id
        elif kind in ("correct", "retract") and check_ins:
            target_id = check_ins[op[1] % len(check_ins)]
            kid = _key_result_of(builder, target_id)
            if kind == "correct":
                submit(
                    "CheckInCorrected",
                    {
                        "key_result_id": kid,
                        "corrects_event_id": target_id,
                        "value": op[2],
                        "reason": "fix",
                    },
                    now,
                )
            else:
                submit(
                    "CheckInRetracted",
                    {"key_result_id": kid, "retracts_event_id": target_id, "reason": "wrong"},
                    now,
                )
        elif kind == "revise":
            _, kid, target, when = op
            submit(
                "KeyResultTargetRevised",
                {"key_result_id": kid, "target": target, "reason": "r"},
                occurred(when),
            )
        elif kind == "retire":
            submit("KeyResultRetired", {"key_result_id": op[1], "reason": "r"}, now)
        elif kind == "status":
            submit("ObjectiveStatusChanged", {"objective_id": op[1], "status": op[2]}, now)
        elif kind == "align":
            submit("ObjectiveAligned", {"objective_id": op[1], "parent_objective_id": op[2]}, now)
        elif kind == "link":
            submit(
                "ObjectiveLinked",
                {"objective_id": op[1], "linked_objective_id": op[2], "relation": "contributes_to"},
                now,
            )
        elif kind == "retire_theme":
            submit("ThemeRetired", {"theme_id": op[1], "reason": "r"}, now)
        elif kind == "owner":
            field = "objective_id" if op[1] in OBJECTIVES else "key_result_id"
            name = "ObjectiveOwnerChanged" if op[1] in OBJECTIVES else "KeyResultOwnerChanged"
            submit(name, {field: op[1], "owner": op[2]}, now)
        elif kind == "close":
            submit("PeriodClosed", {"period_id": PERIOD}, now)
        elif kind == "reopen":
            submit("PeriodReopened", {"period_id": PERIOD, "reason": "late numbers"}, now)
        elif kind == "correct_by_source" and check_ins:
            target_id = check_ins[op[1] % len(check_ins)]
            data = {"key_result_id": _key_result_of(builder, target_id),
                    "corrects_source_event_id": source_ids[target_id], "value": op[2],
                    "reason": "fix"}  # fmt: skip
            submit("CheckInCorrected", data, now)
        builder.now = now


def _key_result_of(builder: LedgerBuilder, check_in_id: str) -> str:
    for event in builder.log.read(builder.org):
        if event.event_id == check_in_id:
            return str(event.data["key_result_id"])
    raise AssertionError(check_in_id)


def normal(value: Any) -> Any:
    """Answers for comparison: floats rounded (SQL may sum in another order)."""
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    return value


class Answers:
    """The queries' answers about ``moment`` (each query run once: :func:`all_answers` and
    :func:`cli_answers` compare the same ones with others)."""

    def __init__(self, store: ProjectionStore, moment: Moment) -> None:
        self.store, self.moment = store, moment
        self.progress = queries.progress(store, ORG, moment, 2)  # as the command reads it
        reads = queries.Reads(store)  # the rest read together, as the dashboard's page does
        self.coverage = queries.coverage(store, ORG, moment, reads=reads)
        self.engagement = monitoring.engagement(store, ORG, moment, reads=reads)
        self.attention = monitoring.attention(store, ORG, moment, 2, reads=reads)
        self.owners = monitoring.owners(store, ORG, reads.sequence_as_of(ORG, moment.as_of))
        self.period_results = queries.period_results(store, ORG, moment, reads=reads)


def all_answers(store: ProjectionStore, moment: Moment, answers: Answers | None = None) -> Any:
    """Every query's answer about ``moment`` (``answers``: those of :class:`Answers`, if run
    already on this store about this moment)."""
    found = Answers(store, moment) if answers is None else answers
    assert (found.store, found.moment) == (store, moment)
    return normal(
        [
            found.progress.objectives,
            found.progress.key_results,
            found.coverage,
            queries.history(store, ORG, "k0", moment),
            queries.check_ins(store, ORG, "k1", moment),
            queries.cascade(store, ORG, moment, 2),
            found.engagement,
            found.attention,
            _trend(store, moment),
            found.owners,
            found.period_results,
        ]
    )


_VIEW_ARGUMENTS = (
    "as_of = {as_of:Nullable(DateTime64(6, 'UTC'))}, at = {at:Nullable(DateTime64(6, 'UTC'))}"
)


def _view(store: ProjectionStore, view: str, moment: Moment, order: str = "") -> list[Any]:
    params = {"as_of": moment.as_of, "at": moment.at, "org": ORG}
    order_by = f" ORDER BY {order}" if order else ""
    return store.dicts(
        f"SELECT * FROM {{db}}.{view}({_VIEW_ARGUMENTS}) WHERE org_id = {{org:String}}{order_by}",
        params,
    )


_ENGAGEMENT = (
    "group", "id", "key_results", "check_ins_7d", "check_ins_28d", "within_cadence",
    "within_cadence_share", "last_check_in_at", "key_result_ids",
)  # fmt: skip


def view_answers(store: ProjectionStore, moment: Moment) -> Any:
    """What the parameterized views answer (over_focus_limit set to 2 in the store)."""
    owners = {
        (r["subject_kind"], r["subject_id"]): r["owner"] for r in _view(store, "owners_at", moment)
    }
    engagement = sorted(
        (tuple(r[c] for c in _ENGAGEMENT) for r in _view(store, "engagement_at", moment)),
        key=str,
    )
    attention = sorted(
        (r["item_id"], r["owner"], r["key_result_ids"])
        for r in _view(store, "attention_at", moment)
    )
    trend = [
        (
            r["subject_kind"],
            r["subject_id"],
            r["granularity"],
            r["bucket"],
            r["progress"],
            r["confidence"],
        )
        for r in _view(
            store, "progress_trend_at", moment, "subject_kind, subject_id, granularity, bucket"
        )
        if r["bucket"] >= _trend_from(moment, r["granularity"])
    ]
    return normal([
        *(_view(store, view, moment)
          for view in ("objective_progress_at", "key_result_progress_at", "theme_coverage_at",
                       "period_results_at")),
        owners, engagement, attention, trend,
    ])  # fmt: skip


def cli_answers(store: ProjectionStore, moment: Moment, answers: Answers | None = None) -> Any:
    """The CLI's answers the parameterized views give: the monitoring ones reduced to the
    views' columns; a trend only over the buckets of the period up to the reference time.
    ``answers``: as for :func:`all_answers`."""
    answered = Answers(store, moment) if answers is None else answers
    assert (answered.store, answered.moment) == (store, moment)
    found = answered.progress
    engagement = sorted(
        (
            tuple(sorted(r[c]) if c == "key_result_ids" else r[c] for c in _ENGAGEMENT)
            for r in answered.engagement
        ),
        key=str,
    )
    attention = sorted(
        (i["item_id"], i.get("owner"), i.get("key_result_ids", [])) for i in answered.attention
    )
    return normal([
        found.objectives, found.key_results, answered.coverage, answered.period_results,
        answered.owners, engagement, attention, _trends(store, moment, found),
    ])  # fmt: skip


TREND_POINTS = 3
"""How many of the latest weekly and daily points of each key result and objective are
compared."""


def _trend_from(moment: Moment, granularity: str) -> date:
    """The first bucket compared: of the last :data:`TREND_POINTS` weeks or days."""
    ref_day = moment.ref.date()
    if granularity == "day":
        return ref_day - timedelta(days=TREND_POINTS - 1)
    return ref_day - timedelta(days=ref_day.weekday() + 7 * (TREND_POINTS - 1))


def _trends(store: ProjectionStore, moment: Moment, found: queries.Progress) -> list[Any]:
    """Each key result's and objective's last weekly and daily trend points that fall in its
    period (the view's series runs from the period's first week or day up to the reference
    time)."""
    points: list[tuple[Any, ...]] = []
    subjects = [(kr["key_result_id"], kr) for kr in found.key_results]
    subjects += [(o["objective_id"], o) for o in found.objectives]
    for subject, record in sorted(subjects, key=lambda s: s[0]):
        starts, ends = record["period_starts_on"], record["period_ends_on"]
        if moment.ref.date() < starts:
            continue
        for daily, first in ((True, starts), (False, starts - timedelta(days=starts.weekday()))):
            trend = monitoring.trend(
                store, ORG, subject, moment, 2, count=TREND_POINTS, daily=daily
            )
            points.extend(
                (p["subject_kind"], subject, p["granularity"], p["bucket"], p["progress"],
                 p["confidence"])
                for p in trend
                if first <= p["bucket"] <= ends
            )  # fmt: skip
    return sorted(points, key=lambda p: (p[0], p[1], p[2], p[3]))


def _trend(store: ProjectionStore, moment: Moment) -> list[Any]:
    """The first objective's trend (none where it is not known at all)."""
    try:
        return monitoring.trend(store, ORG, OBJECTIVES[0], moment, 2, count=2)
    except UnknownNameError:
        return []


class Fresh:
    """A new ledger file and empty stores for each hypothesis example."""

    def __init__(self, workdir: Path, stores: tuple[ProjectionStore, ...]) -> None:
        self.workdir, self.stores, self.count = workdir, stores, 0

    def ledger(self) -> LedgerBuilder:
        self.count += 1
        for store in self.stores:
            reset(store)
        return LedgerBuilder(self.workdir / f"ledger-{uuid4().hex}.db")


INCREMENTAL_CASES = given(
    script=scripts,
    cuts=st.lists(st.integers(1, 80), max_size=4),
    restart=st.booleans(),
    every=st.sampled_from((3, t.SNAPSHOT_EVERY)),
)
"""The cases of the incremental = rebuild property (also run on a served store)."""


AS_OF_CASES = given(
    script=scripts,
    split=st.floats(0, 1),
    at_day=st.integers(0, 90),
    every=st.sampled_from((2, 3, 7, t.SNAPSHOT_EVERY)),
)
"""The cases of the as-of = prefix rebuild property (also run on a served store)."""


def incremental_projection_equals_a_full_rebuild(
    workdir: Path,
    two_stores: tuple[ProjectionStore, ProjectionStore],
    script: Script,
    cuts: list[int],
    restart: bool,
) -> None:
    incremental, full = two_stores
    builder = Fresh(workdir, two_stores).ledger()
    try:
        build(builder, script)
        events = builder.events()
        runner = EmbeddedRunner(builder.log, incremental, Projector(), batch_size=3)
        prefix_log = copy_prefix([], workdir / f"inc-{uuid4().hex}.db")
        done = 0
        for cut in sorted(set(cuts)):
            if cut >= len(events):
                break
            prefix_log.append(events[done:cut])
            done = cut
            EmbeddedRunner(prefix_log, incremental, runner.projector, batch_size=3).catch_up()
        if restart:
            runner = EmbeddedRunner(builder.log, incremental, Projector(), batch_size=5)
        runner.catch_up()
        prefix_log.close()
        EmbeddedRunner(builder.log, full, Projector()).catch_up()
        assert fingerprint(incremental) == fingerprint(full)
        moment = Moment(now=utc(2026, 11, 20))
        assert all_answers(incremental, moment) == all_answers(full, moment)
    finally:
        builder.close()


@contextmanager
def snapshots_every(events: int) -> Iterator[None]:
    """The projector's snapshots (and the queries' bases) every ``events`` events."""
    before = t.SNAPSHOT_EVERY
    t.SNAPSHOT_EVERY = events
    try:
        yield
    finally:
        t.SNAPSHOT_EVERY = before


def as_of_equals_a_rebuild_of_the_prefix(
    *,
    workdir: Path,
    full: ProjectionStore,
    prefix: ProjectionStore,
    builder: LedgerBuilder,
    split: float,
    at_day: int,
    script: Script,
) -> None:
    try:
        build(builder, script)
        events = builder.events()
        EmbeddedRunner(builder.log, full, Projector()).catch_up()
        k = int(split * len(events))
        cutoff = events[k - 1].recorded if k else events[0].recorded - timedelta(seconds=1)
        prefix_log = copy_prefix(events[:k], workdir / f"prefix-{uuid4().hex}.db")
        try:
            EmbeddedRunner(prefix_log, prefix, Projector()).catch_up()
        finally:
            prefix_log.close()
        at = day(at_day)
        moments = (Moment(as_of=cutoff), Moment(as_of=cutoff, at=at))
        answers = [Answers(full, moment) for moment in moments]  # compared twice each
        assert all_answers(full, moments[0], answers[0]) == all_answers(prefix, Moment(now=cutoff))
        assert all_answers(full, moments[1], answers[1]) == all_answers(prefix, Moment(at=at))
        full.set_setting("over_focus_limit", "2")  # the views read it; the queries take it
        for moment, answered in zip(moments, answers, strict=True):
            assert view_answers(full, moment) == cli_answers(full, moment, answered)
    finally:
        builder.close()
