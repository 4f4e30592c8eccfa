"""A structural event recomputes only the objectives it can change: the rows are exactly those
of recomputing every objective (:data:`processors.objectives.SCOPED` off), table by table, in
order, on random ledgers of structural events and check-ins."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors import objectives
from processors import tables as t
from processors.projector import Projector
from processors.tables import RowBatch
from schemas.envelope import LedgerEvent
from tests.projections.ledgers import PERIOD, LedgerBuilder, day, utc

IDS = ("o0", "o1", "o2", "o3", "o4", "o5", "o6")
KEY_RESULTS = ("k0", "k1", "k2", "k3", "k4")
THEMES = ("growth", "ops", "care")
UNITS = ("co", "team")
PERIODS = (PERIOD, "2027-Q1")

objective_ids = st.sampled_from(IDS)
creations = st.tuples(
    st.just("create"),
    objective_ids,
    st.one_of(st.none(), objective_ids),
    st.sampled_from(UNITS),
    st.sampled_from(PERIODS),
    st.lists(st.sampled_from(THEMES[:2]), max_size=2, unique=True),
    st.sampled_from(("key_results", "children", "both")),
    st.sampled_from((1, 2, 3)),
)
key_results = st.tuples(st.just("key_result"), st.sampled_from(KEY_RESULTS), objective_ids)
check_ins = st.tuples(
    st.just("check_in"),
    st.sampled_from(KEY_RESULTS),
    st.integers(0, 100),
    st.sampled_from((None, 0.2, 0.5, 0.9)),
)
structural = st.one_of(
    creations,
    key_results,
    st.tuples(st.just("retire_key_result"), st.sampled_from(KEY_RESULTS)),
    st.tuples(
        st.just("revise"),
        objective_ids,
        st.fixed_dictionaries(
            {},
            optional={
                "title": st.sampled_from(("A", "B")),
                "description": st.sampled_from(("x", "y")),
                "theme_ids": st.lists(st.sampled_from(THEMES), max_size=2, unique=True),
                "rollup": st.sampled_from(("key_results", "children", "both")),
                "weight": st.sampled_from((1, 2, 5)),
            },
        ),
    ),
    st.tuples(st.just("align"), objective_ids, objective_ids),
    st.tuples(
        st.sampled_from(("link", "unlink")),
        objective_ids,
        objective_ids,
        st.sampled_from(("contributes_to", "depends_on")),
    ),
    st.tuples(
        st.just("status"), objective_ids, st.sampled_from(("active", "achieved", "abandoned"))
    ),
    st.tuples(st.sampled_from(("add_theme", "retire_theme")), st.sampled_from(THEMES)),
)
scripts = st.tuples(
    st.lists(creations, min_size=3, max_size=len(IDS)),
    st.lists(key_results, min_size=2, max_size=6),
    st.lists(st.one_of(structural, check_ins, check_ins), min_size=10, max_size=60),
)


def build(builder: LedgerBuilder, operations: list[tuple[Any, ...]]) -> None:
    """Two periods, three themes (one added later), then the operations: those the ledger's
    rules refuse are just rejected."""
    builder.skeleton(themes=THEMES[:2], units=UNITS)
    builder.add(
        "PeriodDefined",
        {"period_id": PERIODS[1], "name": "Q1", "starts_on": "2027-01-01",
         "ends_on": "2027-03-31"},
        utc(2026, 9, 1),
    )  # fmt: skip
    builder.now = day(0, hour=0)
    for operation in operations:
        kind, *rest = operation
        now = builder.now + timedelta(hours=1)
        submission: tuple[str, dict[str, Any]] | None = None
        if kind == "create":
            oid, parent, unit, period, themes, rollup, weight = rest
            data = {"objective_id": oid, "title": oid, "owner_unit_id": unit,
                    "period_id": period, "theme_ids": themes, "rollup": rollup,
                    "weight": weight}  # fmt: skip
            if parent is not None:
                data["parent_objective_id"] = parent
            submission = ("ObjectiveCreated", data)
        elif kind == "key_result":
            kid, oid = rest
            submission = ("KeyResultDefined", {"key_result_id": kid, "objective_id": oid,
                          "title": kid, "kind": "increase", "start": 0, "target": 100,
                          "unit": "points"})  # fmt: skip
        elif kind == "check_in":
            kid, value, confidence = rest
            data = {"key_result_id": kid, "value": value}
            if confidence is not None:
                data["confidence"] = confidence
            submission = ("CheckInRecorded", data)
        elif kind == "retire_key_result":
            submission = ("KeyResultRetired", {"key_result_id": rest[0], "reason": "r"})
        elif kind == "revise" and rest[1]:
            submission = ("ObjectiveRevised", {"objective_id": rest[0], **rest[1]})
        elif kind == "align":
            submission = ("ObjectiveAligned", {"objective_id": rest[0],
                          "parent_objective_id": rest[1]})  # fmt: skip
        elif kind in ("link", "unlink"):
            name = "ObjectiveLinked" if kind == "link" else "ObjectiveUnlinked"
            submission = (name, {"objective_id": rest[0], "linked_objective_id": rest[1],
                          "relation": rest[2]})  # fmt: skip
        elif kind == "status":
            submission = ("ObjectiveStatusChanged", {"objective_id": rest[0], "status": rest[1]})
        elif kind == "add_theme":
            submission = ("ThemeAdded", {"theme_id": rest[0], "name": rest[0].title()})
        elif kind == "retire_theme":
            submission = ("ThemeRetired", {"theme_id": rest[0], "reason": "r"})
        if submission is not None:
            builder.submit(*submission, now, recorded=now)
        builder.now = now


def existing(script: tuple[list[Any], list[Any], list[Any]]) -> list[tuple[Any, ...]]:
    """The script's operations, the first creations numbered o0, o1... (each under an earlier
    one or none) and the objectives named after them among those (so fewer are refused)."""
    created, defined, later = script
    count = len(created)

    def named(value: Any) -> Any:
        return IDS[IDS.index(value) % count] if value in IDS else value

    first = [
        (kind, IDS[n], None if parent is None or not n else IDS[IDS.index(parent) % n], *rest)
        for n, (kind, _oid, parent, *rest) in enumerate(created)
    ]

    def renamed(operation: tuple[Any, ...]) -> tuple[Any, ...]:
        if operation[0] == "create":  # a new one (unless taken) under an existing one
            return (*operation[:2], *map(named, operation[2:]))
        return tuple(map(named, operation))

    return [*first, *map(renamed, [*defined, *later])]


@contextmanager
def scoped(on: bool) -> Iterator[None]:
    before = objectives.SCOPED
    objectives.SCOPED = on
    try:
        yield
    finally:
        objectives.SCOPED = before


def project(events: list[LedgerEvent], cuts: list[int], scope: bool) -> list[RowBatch]:
    """The rows of projecting ``events`` in batches cut at ``cuts``."""
    projector = Projector()
    bounds = [0, *sorted(set(cuts)), len(events)]
    with scoped(scope):
        return [projector.project(events[a:b]) for a, b in pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(scripts, st.lists(st.integers(1, 60), max_size=4))
def test_scoped_recompute_emits_the_rows_of_the_full_one(
    script: tuple[list[Any], list[Any], list[Any]], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        builder = LedgerBuilder(Path(folder) / "ledger.sqlite")
        try:
            build(builder, existing(script))
            events = builder.events()
        finally:
            builder.close()
    full = project(events, cuts, scope=False)
    scoped_rows = project(events, cuts, scope=True)
    for number, (expected, found) in enumerate(zip(full, scoped_rows, strict=True)):
        assert expected.keys() == found.keys()
        for table in expected:
            assert found[table] == expected[table], (number, table)


def test_the_switch_is_on_by_default() -> None:
    assert objectives.SCOPED is True


def test_a_cascade_built_either_way(tmp_path: Path) -> None:
    """A fixed example of each structural event: creations, revisions (weight, themes), a
    realignment (of a parent), links, abandonments (of a parent in another unit than its
    child)."""
    builder = LedgerBuilder(tmp_path / "ledger.sqlite")
    build(
        builder,
        [
            ("create", "o0", None, "co", PERIOD, ["growth"], "both", 1),
            ("create", "o1", "o0", "team", PERIOD, [], "key_results", 2),
            ("create", "o2", "o0", "team", PERIOD, [], "key_results", 1),
            ("create", "o4", "o2", "team", PERIOD, [], "key_results", 1),
            ("key_result", "k0", "o1"),
            ("key_result", "k1", "o2"),
            ("check_in", "k0", 50, 0.5),
            ("check_in", "k1", 10, 0.2),
            ("revise", "o1", {"weight": 3}),
            ("create", "o3", None, "co", PERIOD, ["ops"], "children", 1),
            ("align", "o2", "o3"),
            ("revise", "o0", {"theme_ids": ["ops"]}),
            ("link", "o1", "o2", "depends_on"),
            ("unlink", "o1", "o2", "depends_on"),
            ("status", "o3", "abandoned"),
            ("status", "o1", "abandoned"),
        ],
    )
    events = builder.events()
    builder.close()
    assert len(events) == 7 + 16  # every one accepted
    assert project(events, [], scope=True) == project(events, [], scope=False)


def test_a_parent_that_starts_counting_children_reads_their_rolled_up_progress(
    tmp_path: Path,
) -> None:
    """A check-in moves a child while its parent counts only key results (the child is left to
    roll up when next needed); then the parent counts children: it reads the child's rolled-up
    progress, as a full recompute does (a case hypothesis found: the scoped recompute read the
    child's progress from before the check-in)."""
    builder = LedgerBuilder(tmp_path / "ledger.sqlite")
    build(
        builder,
        [
            ("create", "o0", None, "co", PERIOD, [], "key_results", 1),
            ("key_result", "k0", "o0"),
            ("create", "o1", None, "co", PERIOD, [], "key_results", 1),
            ("align", "o0", "o1"),
            ("check_in", "k0", 1, 0.2),
            ("revise", "o1", {"rollup": "children"}),
        ],
    )
    events = builder.events()
    builder.close()
    assert len(events) == 7 + 6  # every one accepted
    rows = project(events, [], scope=True)
    assert rows == project(events, [], scope=False)
    parent = [row for row in rows[0][t.OBJECTIVES_NOW] if row[1] == "o1"]
    assert parent[-1][-2] == 0.01  # its progress: the child's, 1 of 100
