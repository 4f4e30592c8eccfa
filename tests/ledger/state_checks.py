"""Histories that touch every part of the sequencer's state, the check that a SQLite state
store holds exactly the fold of its ledger, and the submissions both state-store test files
make."""

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import orjson
from hypothesis import strategies as st

from events.ledger import Ledger
from events.log import EventLog
from events.outcomes import Outcome
from events.sequencer import Sequencer
from events.sqlite_log import SqliteEventLog
from events.state import LedgerState
from events.state_store import SqliteStateStore
from schemas.envelope import derive_event_id
from tests.builders import NOW, raw, submission
from tests.ledger.support import sqlite_log

THEMES, UNITS, PERIODS = ("t1", "t1", "t2"), ("u1", "u1", "u2"), ("p1", "p1", "p2")
OBJECTIVES, KEY_RESULTS = ("o1", "o1", "o2", "o3"), ("k1", "k1", "k2")
SWOT, COMPETITORS = ("s1", "s2"), ("c1", "c2")
ORGS = ("acme", "globex")
SOURCES = ("jira", "crm")
EXPLICIT_IDS = UUID("4c0de1e7-3f9a-4c44-9d0b-6a1f1c0b2e55")
"""Namespace of the explicit event ids some submissions carry beside their source's id."""


@st.composite
def _data(
    draw: st.DrawFn, type_name: str, org: str, check_ins: list[tuple[str, str]]
) -> tuple[dict[str, Any], int | None]:
    """A valid ``data`` for ``type_name`` over the small id pools (and its schema version)."""

    def pick(pool: tuple[str, ...]) -> str:
        return draw(st.sampled_from(pool))

    objective, key_result = pick(OBJECTIVES), pick(KEY_RESULTS)
    earlier, earlier_key_result = draw(st.sampled_from(check_ins)) if check_ins else ("", "k1")
    reason = {"reason": "because"}
    table: dict[str, Callable[[], dict[str, Any]]] = {
        "StrategyDefined": lambda: {"mission": "m", "vision": "v"},
        "StrategyRevised": lambda: {"mission": "m2", **reason},
        "SwotItemAdded": lambda: {"swot_id": pick(SWOT), "quadrant": "threat", "text": "x"},
        "SwotItemRemoved": lambda: {"swot_id": pick(SWOT), **reason},
        "CompetitorNoted": lambda: {"competitor_id": pick(COMPETITORS), "name": "Rival"},
        "ThemeAdded": lambda: {"theme_id": pick(THEMES), "name": "Theme"},
        "ThemeRetired": lambda: {"theme_id": pick(THEMES), **reason},
        "OrgUnitAdded": lambda: {
            "unit_id": pick(UNITS),
            "name": "Unit",
            "kind": "team",
            **({"parent_unit_id": pick(UNITS)} if draw(st.booleans()) else {}),
        },
        "OrgUnitRetired": lambda: {"unit_id": pick(UNITS), **reason},
        "PeriodDefined": lambda: {
            "period_id": pick(PERIODS),
            "name": "Q",
            "starts_on": "2026-10-01",
            "ends_on": "2026-12-31",
        },
        "PeriodClosed": lambda: {"period_id": pick(PERIODS)},
        "ObjectiveCreated": lambda: {
            "objective_id": objective,
            "title": "Objective",
            "owner_unit_id": pick(UNITS),
            "period_id": pick(PERIODS),
            "theme_ids": [pick(THEMES)],
            "rollup": "key_results",
            **({"parent_objective_id": pick(OBJECTIVES)} if draw(st.booleans()) else {}),
        },
        "ObjectiveAligned": lambda: {
            "objective_id": objective,
            "parent_objective_id": pick(OBJECTIVES),
        },
        "ObjectiveLinked": lambda: {
            "objective_id": pick(("o1", "o2")),
            "linked_objective_id": pick(("o1", "o2")),
            "relation": "depends_on",
        },
        "ObjectiveUnlinked": lambda: {
            "objective_id": pick(("o1", "o2")),
            "linked_objective_id": pick(("o1", "o2")),
            "relation": "depends_on",
        },
        "ObjectiveStatusChanged": lambda: {
            "objective_id": objective,
            "status": pick(("active", "achieved", "abandoned")),
        },
        "KeyResultDefined": lambda: {
            "key_result_id": key_result,
            "objective_id": objective,
            "title": "KR",
            "kind": "increase",
            "start": draw(st.sampled_from((0, 0.1, 2.5))),
            "target": 100,
            "unit": "%",
        },
        "KeyResultTargetRevised": lambda: {
            "key_result_id": key_result,
            "target": draw(st.sampled_from((50, -1))),
            **reason,
        },
        "KeyResultRetired": lambda: {"key_result_id": key_result, **reason},
        "CheckInRecorded": lambda: {"key_result_id": key_result, "value": 3, "confidence": 0.5},
        "CheckInCorrected": lambda: {
            "key_result_id": earlier_key_result,
            "corrects_event_id": earlier,
            "value": 4,
            **reason,
        },
        "CheckInRetracted": lambda: {
            "key_result_id": earlier_key_result,
            "retracts_event_id": earlier,
            **reason,
        },
    }
    if type_name == "CheckInRecordedV1":
        return {"key_result_id": key_result, "value": 3, "confidence_percent": 50}, 1
    return table[type_name](), None


TYPES = (
    "StrategyDefined",
    "StrategyRevised",
    "SwotItemAdded",
    "SwotItemRemoved",
    "CompetitorNoted",
    "ThemeAdded",
    "ThemeRetired",
    "OrgUnitAdded",
    "OrgUnitRetired",
    "PeriodDefined",
    "PeriodClosed",
    "ObjectiveCreated",
    "ObjectiveAligned",
    "ObjectiveAligned",
    "ObjectiveLinked",
    "ObjectiveLinked",
    "ObjectiveUnlinked",
    "ObjectiveStatusChanged",
    "KeyResultDefined",
    "KeyResultTargetRevised",
    "KeyResultRetired",
    "CheckInRecorded",
    "CheckInRecorded",
    "CheckInRecorded",
    "CheckInRecordedV1",
    "CheckInCorrected",
    "CheckInCorrected",
    "CheckInRetracted",
    "CheckInRetracted",
)


def _setup(org: str) -> list[bytes]:
    """Strategy, theme t1, unit u1, period p1, objective o1 and key result k1 of ``org``."""
    theme = {"theme_id": "t1", "name": "Theme"}
    unit = {"unit_id": "u1", "name": "Unit", "kind": "company"}
    period = {"period_id": "p1", "name": "Q", "starts_on": "2026-10-01", "ends_on": "2026-12-31"}
    objective = {
        "objective_id": "o1",
        "title": "Objective",
        "owner_unit_id": "u1",
        "period_id": "p1",
        "theme_ids": ["t1"],
        "rollup": "key_results",
    }
    key_result = {
        "key_result_id": "k1",
        "objective_id": "o1",
        "title": "KR",
        "kind": "increase",
        "start": 0,
        "target": 100,
        "unit": "%",
    }
    steps: list[tuple[str, dict[str, Any]]] = [
        ("StrategyDefined", {"mission": "m", "vision": "v"}),
        ("ThemeAdded", theme),
        ("OrgUnitAdded", unit),
        ("PeriodDefined", period),
        ("ObjectiveCreated", objective),
        ("ObjectiveCreated", {**objective, "objective_id": "o2", "parent_objective_id": "o1"}),
        ("KeyResultDefined", key_result),
    ]
    return [
        orjson.dumps(submission(name, data, org_id=org, key=f"{org}-setup{n}"))
        for n, (name, data) in enumerate(steps)
    ]


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[bytes]:
    """Submissions of every type over small id pools, most orgs set up first: many are
    accepted, many refused, and some repeat an earlier one (the same bytes, the same content
    under a new event id from the same source, or other content)."""
    lines = [line for org in ORGS if draw(st.booleans()) for line in _setup(org)]
    check_ins: dict[str, list[tuple[str, str]]] = {
        org: [(str(uuid5(EXPLICIT_IDS, "none")), "k1")] for org in ORGS
    }
    for n in range(draw(st.integers(1, max_size))):
        if lines and draw(st.integers(0, 5)) == 0:  # a repeat of an earlier line
            earlier = orjson.loads(draw(st.sampled_from(lines)))
            how = draw(st.sampled_from(("same", "new_event_id", "other_content")))
            if how == "new_event_id":
                earlier["event_id"] = str(uuid5(EXPLICIT_IDS, f"retry{n}"))
            elif how == "other_content":
                earlier["actor"] = "mallory@example.com"
            lines.append(orjson.dumps(earlier))
            continue
        org = draw(st.sampled_from(ORGS))
        type_name = draw(st.sampled_from(TYPES))
        data, version = draw(_data(type_name, org, check_ins[org]))
        source = draw(st.sampled_from(SOURCES))
        envelope: dict[str, Any] = {"source": source}
        if version is not None:
            envelope["schema_version"] = version
        if draw(st.integers(0, 3)) == 0:  # an explicit event id beside the source's id
            envelope["event_id"] = str(uuid5(EXPLICIT_IDS, f"{org}/{n}"))
        key = f"ci{n % 6}" if type_name.startswith("CheckInRecorded") else f"e{n}"
        document = submission(type_name.removesuffix("V1"), data, org_id=org, **envelope)
        document["source_event_id"] = key
        if type_name.startswith("CheckInRecorded"):
            event_id = envelope.get("event_id") or str(derive_event_id(org, source, key))
            check_ins[org].append((event_id, data["key_result_id"]))
        lines.append(orjson.dumps(document))
    return lines


# --- the state a SQLite store holds, against the fold of its ledger --------------------------


def fold_of(log: EventLog) -> LedgerState:
    return Sequencer.from_ledger(log.read()).state


def assert_store_is_the_fold(store: SqliteStateStore, path: Path, fold: LedgerState) -> None:
    """Whatever the store (whose file is ``path``) answers, and every row it keeps, is what the
    fold holds; and it reflects its whole ledger (embedded)."""
    db = sqlite3.connect(path)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if "events" in tables:
            end = db.execute("SELECT coalesce(max(position), 0) + 1 FROM events").fetchone()[0]
            assert store.mark() == {0: end}
        view = store.view([])
        for org_id, org in fold.orgs.items():
            mine = view.orgs[org_id]
            assert (mine.last_sequence, mine.last_hash, mine.strategy_defined) == (
                org.last_sequence,
                org.last_hash,
                org.strategy_defined,
            ), org_id
            for name in ("swot", "themes", "units", "periods", "objectives", "key_results"):
                for key, value in getattr(org, name).items():
                    assert getattr(mine, name).get(key) == value, (org_id, name, key)
            for key, check_in in org.check_ins.items():
                assert mine.check_ins.get(key) == check_in, (org_id, key)
            assert all(link in mine.links for link in org.links)
            assert all(competitor in mine.competitors for competitor in org.competitors)
        for key, digest in fold.known.items():
            assert view.known.get(key) == digest, key
        for source_key, first in fold.sources.items():
            assert view.sources.get(source_key) == first, source_key
        _assert_no_other_rows(db, fold, tables)
    finally:
        store.end()
        db.close()


def _assert_no_other_rows(db: sqlite3.Connection, fold: LedgerState, tables: set[str]) -> None:
    orgs = fold.orgs
    for org_id, kind, id_, flag in db.execute("SELECT * FROM sequencer_flags"):
        org = orgs[org_id]
        if kind == "strategy":
            assert bool(flag) == org.strategy_defined
        elif kind == "competitor":
            assert id_ in org.competitors
        else:
            table = {
                "swot": org.swot,
                "theme": org.themes,
                "unit": org.units,
                "period": org.periods,
            }
            assert table[kind][id_] == bool(flag), (org_id, kind, id_)
    for org_id, objective_id, status, period_id, parent_id in db.execute(
        "SELECT * FROM sequencer_objectives"
    ):
        kept = orgs[org_id].objectives[objective_id]
        assert (kept.status, kept.period_id, kept.parent_id) == (status, period_id, parent_id)
    for org_id, *link in db.execute("SELECT * FROM sequencer_links"):
        assert tuple(link) in orgs[org_id].links
    for org_id, key_result_id, objective_id, kind, start, active in db.execute(
        "SELECT * FROM sequencer_key_results"
    ):
        kept_kr = orgs[org_id].key_results[key_result_id]
        assert (kept_kr.objective_id, kept_kr.kind, kept_kr.start, kept_kr.active) == (
            objective_id,
            kind,
            start,
            bool(active),
        )
    for org_id, key in db.execute("SELECT * FROM sequencer_retracted"):
        assert orgs[org_id].check_ins[key].retracted
    for org_id, source, source_event_id, first in db.execute("SELECT * FROM sequencer_sources"):
        assert fold.sources[(org_id, source, source_event_id)] == first
    if "sequencer_events" in tables:  # standalone
        rows = db.execute("SELECT org_id, event_id, digest FROM sequencer_events").fetchall()
        assert {(org, key): digest for org, key, digest in rows} == fold.known
        heads = db.execute("SELECT org_id, sequence, hash FROM sequencer_heads").fetchall()
        assert {org: (s, h) for org, s, h in heads} == {
            org_id: (org.last_sequence, org.last_hash) for org_id, org in orgs.items()
        }


def in_memory(lines: list[bytes]) -> list[Outcome]:
    sequencer = Sequencer()
    return [sequencer.submit(line, now=NOW) for line in lines]


def submit(path: Path, lines: list[bytes], batch_size: int = 1000) -> list[Outcome]:
    ledger = Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=batch_size)
    try:
        return list(ledger.submit_many((line, None) for line in lines))
    finally:
        ledger.log.close()


def check_file(path: Path) -> None:
    with sqlite_log(path) as log:
        assert_store_is_the_fold(log.state, path, fold_of(log))


def key_result(key_result_id: str, objective_id: str = "o1") -> bytes:
    return raw(
        "KeyResultDefined",
        {"key_result_id": key_result_id, "objective_id": objective_id, "title": key_result_id,
         "kind": "increase", "start": 0, "target": 100, "unit": "%"},
    )  # fmt: skip
