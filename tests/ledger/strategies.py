"""Hypothesis strategies: mixes of valid, duplicate, conflicting, invalid and reordered
submissions across a few orgs, each tagged with what it is."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import orjson
from hypothesis import strategies as st

from events.outcomes import Accepted, Duplicate, Outcome, Rejection
from events.reasons import ReasonCode
from schemas.envelope import derive_event_id
from tests.builders import NOW, submission

ORGS = ("acme", "globex", "initech")
RETRY_NAMESPACE = UUID("0d7c3b6e-52f1-4f4e-8f3a-2f0e6c1b9a77")
"""Where a source's retries get their new event ids from (any fixed namespace)."""

EXPECTED_REASON = {
    "invalid_json": ReasonCode.INVALID_JSON,
    "schema": ReasonCode.SCHEMA_VIOLATION,
    "unknown_type": ReasonCode.UNKNOWN_TYPE,
    "unknown_ref": ReasonCode.UNKNOWN_REFERENCE,
    "clock_skew": ReasonCode.CLOCK_SKEW,
}
"""Kinds of item whose outcome does not depend on the ledger's state."""

REPEATS = ("duplicate", "conflict", "source_retry", "source_conflict")
"""Kinds of item that repeat an earlier one: by its event_id, or by its source_event_id under a
new event_id (a source's retry); with the same content or other content."""

EXTRA_KINDS = (*REPEATS, *EXPECTED_REASON)

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_NUMBERS = st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
_SAFE_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(-(2.0**53), 2.0**53, allow_nan=False)
    | TEXT
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5)


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | _NUMBERS | TEXT, _containers, max_leaves=25
)
"""JSON-native values (no lone surrogates: they cannot be written as UTF-8)."""

SAFE_JSON_VALUES: st.SearchStrategy[Any] = st.recursive(_SAFE_LEAVES, _containers, max_leaves=25)
"""JSON-native values whose numbers read back as themselves with plain ``json.loads`` (no
doubles of 2**53 or more written as integers)."""


@dataclass(frozen=True)
class Item:
    """One submission of a generated mix."""

    kind: str
    """``valid``, ``duplicate``, ``conflict`` or a key of :data:`EXPECTED_REASON`."""
    raw: bytes
    origin: int | None = None
    """For duplicates and conflicts: the index of the original item in the mix."""


@dataclass(frozen=True)
class Mix:
    items: list[Item]
    orgs: list[str]
    reordered: bool
    """Whether valid items were swapped out of their natural order (so some may be refused)."""

    @property
    def raws(self) -> list[bytes]:
        return [item.raw for item in self.items]


def _line(type_name: str, data: dict[str, Any], org: str, key: str, **envelope: Any) -> bytes:
    return orjson.dumps(submission(type_name, data, org_id=org, key=key, **envelope))


def org_script(org: str, values: list[float], extras: bool) -> list[bytes]:
    """A valid history of one org: setup, check-ins, and optionally a correction and more."""
    lines = [
        _line("StrategyDefined", {"mission": f"{org} mission", "vision": "v"}, org, f"{org}-s"),
        _line("ThemeAdded", {"theme_id": "t1", "name": "Customers"}, org, f"{org}-t1"),
        _line("OrgUnitAdded", {"unit_id": "co", "name": org, "kind": "company"}, org, f"{org}-u"),
        _line(
            "PeriodDefined",
            {"period_id": "q4", "name": "Q4", "starts_on": "2026-10-01", "ends_on": "2026-12-31"},
            org,
            f"{org}-p",
        ),
        _line(
            "ObjectiveCreated",
            {
                "objective_id": "o1",
                "title": "Happy customers",
                "owner_unit_id": "co",
                "period_id": "q4",
                "theme_ids": ["t1"],
                "rollup": "key_results",
            },
            org,
            f"{org}-o1",
        ),
        _line(
            "KeyResultDefined",
            {
                "key_result_id": "kr1",
                "objective_id": "o1",
                "title": "NPS",
                "kind": "increase",
                "start": 0,
                "target": 100,
                "unit": "points",
            },
            org,
            f"{org}-kr1",
        ),
    ]
    for i, value in enumerate(values):
        data = {"key_result_id": "kr1", "value": value, "confidence": (i % 11) / 10}
        lines.append(_line("CheckInRecorded", data, org, f"{org}-ci{i}"))
    if extras and values:
        first = str(derive_event_id(org, "tests", f"{org}-ci0"))
        lines.append(
            _line(
                "CheckInCorrected",
                {"key_result_id": "kr1", "corrects_event_id": first, "value": 1.5, "reason": "r"},
                org,
                f"{org}-fix",
            )
        )
        lines.append(
            _line(
                "ObjectiveStatusChanged",
                {"objective_id": "o1", "status": "achieved"},
                org,
                f"{org}-st",
            )
        )
    return lines


def _variant(original: bytes, kind: str, draw: st.DrawFn, org: str, n: int) -> bytes:
    if kind == "duplicate":
        # The same content, serialised differently half of the time.
        if draw(st.booleans()):
            return original
        return orjson.dumps(orjson.loads(original), option=orjson.OPT_SORT_KEYS)
    if kind == "conflict":
        document = orjson.loads(original)
        return orjson.dumps({**document, "actor": "mallory@example.com"})
    if kind in ("source_retry", "source_conflict"):
        document = orjson.loads(original)
        document["event_id"] = str(uuid5(RETRY_NAMESPACE, f"{org}/{n}"))
        if kind == "source_conflict":
            document["actor"] = "mallory@example.com"
        return orjson.dumps(document)
    if kind == "invalid_json":
        cut = draw(st.integers(1, len(original) - 1))
        return original[:cut]
    key = f"{org}-extra{n}"
    check_in = {"key_result_id": "kr1", "value": 1, "confidence": 0.5}
    if kind == "schema":
        return _line("CheckInRecorded", {**check_in, "confidence": 7}, org, key)
    if kind == "unknown_type":
        return _line("CheckInDeleted", check_in, org, key)
    if kind == "unknown_ref":
        return _line("CheckInRecorded", {**check_in, "key_result_id": "nope"}, org, key)
    if kind == "clock_skew":
        future = (NOW + timedelta(minutes=6)).isoformat()
        return _line("CheckInRecorded", check_in, org, key, occurred_at=future)
    raise ValueError(kind)


@st.composite
def mixes(draw: st.DrawFn, max_orgs: int = 3, max_check_ins: int = 6, max_extras: int = 10) -> Mix:
    """Valid org histories, interleaved, some swapped, with invalid and repeated items mixed in."""
    orgs = list(ORGS[: draw(st.integers(1, max_orgs))])
    scripts = {
        org: org_script(
            org,
            draw(
                st.lists(
                    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)),
                    max_size=max_check_ins,
                )
            ),
            draw(st.booleans()),
        )
        for org in orgs
    }
    labels = [org for org in orgs for _ in scripts[org]]
    order = draw(st.permutations(labels))
    cursors = dict.fromkeys(orgs, 0)
    valid: list[bytes] = []
    for org in order:
        valid.append(scripts[org][cursors[org]])
        cursors[org] += 1
    reorder = draw(st.booleans())
    swaps = (
        draw(st.lists(st.integers(0, len(valid) - 2), min_size=1, max_size=3)) if reorder else []
    )
    for i in swaps:
        valid[i], valid[i + 1] = valid[i + 1], valid[i]
    items = [Item("valid", line) for line in valid]
    for n in range(draw(st.integers(0, max_extras))):
        kind = draw(st.sampled_from(EXTRA_KINDS))
        origin = draw(st.integers(0, len(items) - 1))
        while items[origin].kind != "valid":
            origin -= 1  # the first item is always valid
        org = orjson.loads(items[origin].raw)["org_id"]
        line = _variant(items[origin].raw, kind, draw, org, n)
        position = draw(st.integers(origin + 1, len(items)))
        shifted = [
            Item(i.kind, i.raw, i.origin + (i.origin >= position) if i.origin is not None else None)
            for i in items
        ]
        shifted.insert(position, Item(kind, line, origin if kind in REPEATS else None))
        items = shifted
    return Mix(items, orgs, reordered=bool(swaps))


def check_tagged_outcomes(mix: Mix, outcomes: list[Outcome]) -> None:
    """What the tags promise: state-independent rejections, duplicates and conflicts of accepted
    originals, and (without reordering) every valid item accepted."""
    assert len(outcomes) == len(mix.items)
    for item, outcome in zip(mix.items, outcomes, strict=True):
        if item.kind in EXPECTED_REASON:
            assert isinstance(outcome, Rejection), (item, outcome)
            assert outcome.reason is EXPECTED_REASON[item.kind], (item, outcome)
        elif item.kind in REPEATS:
            assert item.origin is not None
            original = outcomes[item.origin]
            if isinstance(original, Accepted):
                if item.kind in ("duplicate", "source_retry"):
                    assert outcome == Duplicate(original.event.event_id, original.event.org_id), (
                        item,
                        outcome,
                    )
                else:
                    assert isinstance(outcome, Rejection), (item, outcome)
                    assert outcome.reason is ReasonCode.CONFLICT, (item, outcome)
        elif not mix.reordered:
            assert isinstance(outcome, Accepted), (item, outcome)


def further_submissions(orgs: list[str]) -> list[bytes]:
    """New submissions whose fate depends on each org's state, to compare two states by."""
    lines: list[bytes] = []
    for org in orgs:
        check_in = {"key_result_id": "kr1", "value": 42, "confidence": 0.9}
        first = str(derive_event_id(org, "tests", f"{org}-ci0"))
        lines += [
            _line("CheckInRecorded", check_in, org, f"{org}-later"),
            _line("ThemeRetired", {"theme_id": "t1", "reason": "done"}, org, f"{org}-tr"),
            _line(
                "ObjectiveStatusChanged",
                {"objective_id": "o1", "status": "abandoned"},
                org,
                f"{org}-ab",
            ),
            _line(
                "CheckInRetracted",
                {"key_result_id": "kr1", "retracts_event_id": first, "reason": "r"},
                org,
                f"{org}-rt",
            ),
        ]
    return lines
