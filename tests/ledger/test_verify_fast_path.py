"""``ChainVerifier.add_rows`` (``verify``'s fast path over SQLite rows) gives exactly the
verdicts of ``ChainVerifier.add`` (the reference path), whatever was done to the rows,
including forgeries that recompute the hash the way the fast path computes it."""

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.canonical import canonical_bytes
from events.chain import ChainReport, ChainVerifier
from events.sqlite_log import SqliteEventLog
from events.stored import STORED_COLUMNS, StoredBytes
from tests.builders import chained_events
from tests.ledger.byte_tampering import MALFORMED, SAME_VALUE, resealed
from tests.ledger.support import store

Row = tuple[Any, ...]


def _rows() -> list[Row]:
    events = chained_events("acme", "globex", check_in_count=3)
    return [
        (canonical_bytes(e.to_record()), *(getattr(e, name) for name in STORED_COLUMNS))
        for e in sorted(events, key=lambda e: (e.org_id, e.sequence))
    ]  # fmt: skip


ROWS = _rows()


def reference(rows: list[Row]) -> list[ChainReport]:
    verifier = ChainVerifier()
    for row in rows:
        verifier.add(StoredBytes.from_row(row))
    return verifier.reports()


def fast(rows: list[Row], chunk: int = 3) -> list[ChainReport]:
    verifier = ChainVerifier()
    verifier.add_rows(rows[i : i + chunk] for i in range(0, len(rows), chunk))
    return verifier.reports()


def with_body(row: Row, body: Any, *, rehash_column: bool = True) -> Row:
    hash_ = orjson.loads(body)["hash"] if rehash_column else row[7]
    return (body, *row[1:7], hash_)


def forged(row: Row, **changes: Any) -> Row:
    """The row's event with ``changes`` (``data`` merged), resealed, its hash column matching."""
    record = orjson.loads(row[0])
    data = {**record["data"], **changes.pop("data", {})}
    return with_body(row, resealed({**record, **changes, "data": data}))


FORGERIES: dict[str, Any] = {
    "integral_float": lambda row: forged(row, data={"value": 10.0}),
    "exponent_float": lambda row: forged(row, data={"value": 1e-7}),
    "huge_float": lambda row: forged(row, data={"value": 1.5e17}),
    "big_integer": lambda row: forged(row, data={"value": 2**60}),
    "non_ascii_key": lambda row: forged(row, data={"\ue000": 1, "\U0001f600": 2}),
    "non_ascii_text": lambda row: forged(row, data={"comment": "prêt à l'emploi"}),
    "nested_hash_member": lambda row: forged(row, data={"hash": "f" * 64}),
    "container_after_hash": lambda row: forged(row, source={"hash": "f" * 64}),
    "list_after_hash": lambda row: forged(row, source=["x"]),
    "float_schema_version": lambda row: forged(row, schema_version=2.0),
    "bool_actor": lambda row: forged(row, actor=True),
    "int_actor": lambda row: forged(row, actor=7),
    "big_schema_version": lambda row: forged(row, schema_version=2**60),
    "data_not_an_object": lambda row: _data_as(row, "x"),
    "deep_data": lambda row: forged(row, data={"deep": _nested(20)}),
    "extra_key": lambda row: with_body(row, resealed({**orjson.loads(row[0]), "zz": 1})),
    "not_canonical_but_resealed": lambda row: with_body(row, _spaced(row[0])),
}


def _spaced(body: bytes) -> bytes:
    record = orjson.loads(body)
    return resealed(record, b" " + orjson.dumps(record, option=orjson.OPT_SORT_KEYS))


def _data_as(row: Row, data: Any) -> Row:
    record = orjson.loads(row[0])
    return with_body(row, resealed({**record, "data": data}))


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


COLUMN_CHANGES: dict[str, Any] = {
    "sequence_float": (2, float),
    "sequence_text": (2, str),
    "org_int": (1, lambda v: 7),
    "org_none": (1, lambda v: None),
    "org_other": (1, lambda v: "globex" if v == "acme" else "acme"),
    "event_id_bytes": (3, lambda v: v.encode()),
    "type_other": (4, lambda v: v + "x"),
    "hash_upper": (7, lambda v: v.upper()),
    "recorded_at_other": (6, lambda v: v[:-1]),
}


def _alter(row: Row, how: str) -> Row:
    if how in SAME_VALUE:
        return with_body(row, SAME_VALUE[how](row[0]), rehash_column=False)
    if how in MALFORMED:
        return (MALFORMED[how](row[0]), *row[1:])
    if how in FORGERIES:
        return FORGERIES[how](row)  # type: ignore[no-any-return]
    if how == "body_none":
        return (None, *row[1:])
    index, change = COLUMN_CHANGES[how]
    return (*row[:index], change(row[index]), *row[index + 1 :])


ALTERATIONS = sorted([*SAME_VALUE, *MALFORMED, *FORGERIES, *COLUMN_CHANGES, "body_none"])


def test_an_intact_ledger_gives_the_same_reports() -> None:
    assert fast(ROWS) == reference(ROWS)
    assert all(report.ok for report in fast(ROWS))


@pytest.mark.parametrize("how", ALTERATIONS)
@pytest.mark.parametrize("at", [0, 1, len(ROWS) // 2 - 1, len(ROWS) - 1])
def test_one_altered_row_gives_the_same_reports(how: str, at: int) -> None:
    rows = list(ROWS)
    rows[at] = _alter(rows[at], how)
    assert fast(rows) == reference(rows)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(ALTERATIONS), st.integers(0, len(ROWS) - 1)),
        max_size=3,
        unique_by=lambda alteration: alteration[1],  # one alteration a row
    ),
    st.permutations(range(len(ROWS))) | st.just(list(range(len(ROWS)))),
    st.integers(1, 8),
)
def test_any_alterations_and_order_give_the_same_reports(
    alterations: list[tuple[str, int]], order: list[int], chunk: int
) -> None:
    rows = list(ROWS)
    for how, at in alterations:
        rows[at] = _alter(rows[at], how)
    rows = [rows[i] for i in order]
    assert fast(rows, chunk) == reference(rows)


def test_the_sqlite_rows_are_what_read_stored_gives(tmp_path: Path) -> None:
    store(tmp_path / "ledger.db", chained_events("acme", "globex", check_in_count=3))
    log = SqliteEventLog(tmp_path / "ledger.db", read_only=True)
    try:
        rows = [row for chunk in log.stored_rows() for row in chunk]
        assert [StoredBytes.from_row(row) for row in rows] == list(log.read_stored())
        assert list(log.read_stored()) == _read_by_name(tmp_path / "ledger.db")
        assert [
            StoredBytes.from_row(row) for chunk in log.stored_rows("acme", 2, 4) for row in chunk
        ] == list(log.read_stored("acme", 2, 4))
        assert fast(rows) == reference(rows)
    finally:
        log.close()


def _read_by_name(path: Path) -> list[StoredBytes]:
    """Every stored event read with plain SQL, each column by its name (not through
    ``stored_rows``' layout)."""
    names = ("org_id", "sequence", "event_id", "type", "occurred_at", "recorded_at", "hash")
    db = sqlite3.connect(path)
    try:
        found = db.execute(
            f"SELECT CAST(body AS BLOB), {', '.join(names)} FROM events ORDER BY org_id, sequence"
        ).fetchall()
    finally:
        db.close()
    return [StoredBytes(body, dict(zip(names, columns, strict=True))) for body, *columns in found]
