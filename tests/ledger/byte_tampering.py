"""Tampering with the bytes of stored events: edits that keep the JSON value, and malformed
bodies. Shared by the SQLite and Kafka campaigns and the verifier-agreement tests."""

import hashlib
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.builders import chained_events
from tests.ledger.support import store

Edit = Callable[[bytes], bytes]


def _first_data_key(body: bytes) -> str:
    keys: dict[str, Any] = orjson.loads(body)["data"]
    return min(keys)


def _number_as(body: bytes, key: str, text: bytes) -> bytes:
    """``body`` with the integer value of ``key`` written as ``text`` (``%d``: the value)."""
    value = orjson.loads(body)[key]
    old = b'"%s":%d,' % (key.encode(), value)
    assert old in body
    return body.replace(old, b'"%s":' % key.encode() + text.replace(b"%d", b"%d" % value) + b",", 1)


def _once(old: bytes, new: bytes) -> Edit:
    def edit(body: bytes) -> bytes:
        assert old in body, old
        return body.replace(old, new, 1)

    return edit


SAME_VALUE: dict[str, Edit] = {
    "whitespace": lambda body: body[:1] + b" " + body[1:],
    "trailing_whitespace": lambda body: body + b"\t",
    "key_order": lambda body: orjson.dumps(dict(reversed(orjson.loads(body).items()))),
    "number_10.0_for_10": lambda body: _number_as(body, "schema_version", b"%d.0"),
    "number_exponent": lambda body: _number_as(body, "schema_version", b"%de0"),
    "escaped_at_sign": _once(b"@", b"\\u0040"),
    "escaped_key_letter": _once(b'"actor"', b'"\\u0061ctor"'),
    "duplicated_key": lambda body: b'{"actor":"mallory",' + body[1:],
    "duplicated_key_in_data": lambda body: body.replace(
        b'"data":{', b'"data":{"%s":"mallory",' % _first_data_key(body).encode(), 1
    ),
}
"""Edits after which the body still parses to the same value as the stored event (Python's
reading): only a byte-for-byte check of the stored bytes can see them."""

MALFORMED: dict[str, Edit] = {
    "not_json": lambda body: body[:-1],
    "nan": lambda body: _number_as(body, "sequence", b"NaN"),
    "1e400": lambda body: _number_as(body, "sequence", b"1e400"),
    "400_digit_integer": lambda body: _number_as(body, "sequence", b"9" * 400),
    "lone_surrogate": _once(b'"actor":"', b'"actor":"\\ud800'),
    "bom": lambda body: b"\xef\xbb\xbf" + body,
    "invalid_utf8": _once(b"@", b"\xff"),
    "deep_nesting": _once(b'"data":{', b'"data":{"deep":' + b"[" * 1000 + b"]" * 1000 + b","),
    "array": lambda body: b"[]",
    "empty": lambda body: b"",
}
"""Bodies that are not a well-formed JSON object (deep nesting: 1000 levels, which orjson
reads but a recursive serialiser cannot write back)."""


def same_value(body: bytes, edit: str) -> bytes:
    """``body`` edited by :data:`SAME_VALUE` ``edit``, checked to keep the value (as read by
    Python)."""
    edited = SAME_VALUE[edit](body)
    assert edited != body
    assert orjson.loads(edited) == orjson.loads(body), edit
    return edited


def stored_body(path: Path, org_id: str, sequence: int) -> bytes:
    db = sqlite3.connect(path)
    try:
        (body,) = db.execute(
            "SELECT CAST(body AS BLOB) FROM events WHERE org_id = ? AND sequence = ?",
            (org_id, sequence),
        ).fetchone()
        return bytes(body)
    finally:
        db.close()


def stored_bodies(path: Path) -> list[bytes]:
    """Every stored body, in (org, sequence) order: what ``export`` must write."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT CAST(body AS BLOB) FROM events ORDER BY org_id, sequence")
        return [bytes(body) for (body,) in rows]
    finally:
        db.close()


def overwrite(path: Path, org_id: str, sequence: int, /, **columns: Any) -> None:
    """Set columns of one stored event behind the ledger's back (its triggers dropped). A
    ``body`` given as bytes is stored as text, byte for byte (UTF-8 or not)."""
    db = sqlite3.connect(path)
    try:
        db.execute("DROP TRIGGER IF EXISTS events_are_immutable")
        assignments = ", ".join(
            f"{name} = CAST(? AS TEXT)" if name == "body" else f"{name} = ?" for name in columns
        )
        db.execute(
            f"UPDATE events SET {assignments} WHERE org_id = ? AND sequence = ?",
            (*columns.values(), org_id, sequence),
        )
        db.commit()
    finally:
        db.close()


def edit_body(path: Path, org_id: str, sequence: int, edit: Edit) -> bytes:
    """Apply ``edit`` to one stored body; the new body."""
    body = edit(stored_body(path, org_id, sequence))
    overwrite(path, org_id, sequence, body=body)
    return body


ORGS = ("acme", "globex")


def ledger_template(directory: Path, check_in_count: int) -> Path:
    """A ledger of :data:`ORGS` (their setup and ``check_in_count`` check-ins each) to copy."""
    path = directory / "ledger.db"
    store(path, chained_events(*ORGS, check_in_count=check_in_count))
    return path


def data_dir_with(template: Path, parent: Path) -> Path:
    """A data directory under ``parent`` holding a copy of the ``template`` ledger."""
    directory = parent / "data"
    directory.mkdir()
    shutil.copy(template, directory / "ledger.db")
    return directory


def resealed(record: dict[str, Any], body: bytes | None = None) -> bytes:
    """``record`` written by orjson (or ``body``), its hash set to what the fast path
    computes: SHA-256 of prev_hash and the bytes without the last ``,"hash":"..."`` member."""
    record = {**record, "hash": "0" * 64}
    body = body if body is not None else orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    at = body.rfind(b',"hash":"')
    digest = hashlib.sha256(record["prev_hash"].encode())
    digest.update(body[:at] + body[at + 74 :])
    sealed = b'"hash":"%s"' % digest.hexdigest().encode()
    return body.replace(b'"hash":"' + b"0" * 64 + b'"', sealed)
