"""JSON that every reader reads the same way: no duplicated keys, bounded nesting.

RFC 8259 leaves an object with a repeated key to the reader: Python and orjson keep the last
value, SQLite's ``json_extract`` and others the first. Such a document means different things to
different readers, so neither a submission nor a stored event may contain one.
"""

import json
from typing import Any

import orjson


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return result


def duplicated_key(raw: bytes, document: Any) -> str | None:
    """A key that appears twice in one object of ``raw``, at any depth; None if there is none.

    ``document`` is what orjson parsed from ``raw``. Fast path: without a backslash in ``raw``
    every ``"`` delimits a string, and the parsed document (which keeps one member per key)
    re-serialised has as many ``"`` as ``raw`` exactly when no member was dropped. Otherwise
    (or when the document is too deep for orjson to write) the standard library's C scanner
    looks at every object's pairs.
    """
    if b"\\" not in raw:
        try:
            if raw.count(b'"') == orjson.dumps(document).count(b'"'):
                return None
        except orjson.JSONEncodeError:  # orjson reads 1,024 levels deep and writes only 254
            pass
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except _DuplicateKeyError as error:
        return error.key
    except (ValueError, RecursionError):  # orjson accepted it; only its depth can differ
        return None
    return None


def deeper_than(raw: bytes, document: Any, limit: int) -> bool:
    """Whether ``document`` (parsed from ``raw``) nests arrays and objects over ``limit`` deep.

    Fast path: a document with at most ``limit`` opening brackets in all cannot be deeper.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    level: list[Any] = [document]
    for _ in range(limit + 1):
        inner: list[Any] = []
        for item in level:
            if type(item) is dict:
                inner.extend(item.values())
            elif type(item) is list:
                inner.extend(item)
            else:
                continue
            inner.append(None)  # an empty container is a level too
        if not inner:
            return False
        level = inner
    return True
