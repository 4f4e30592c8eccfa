"""Canonical JSON (RFC 8785, JCS): the bytes that are hashed, stored and exported.

JCS is specified independently of this project and implemented in many languages, which is
what lets an auditor verify the chain without our code. Keys are sorted by UTF-16 code units,
there is no white space, strings are escaped minimally and numbers are formatted as
ECMAScript's ``Number.prototype.toString`` does.
"""

import json
import math
from functools import lru_cache
from typing import Any

import orjson

_MAX_SAFE_INTEGER = 2**53


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        exp = n - 1
        head = digits[0] + ("." + digits[1:] if k > 1 else "")
        text = f"{head}e{'+' if exp > 0 else '-'}{abs(exp)}"
    return sign + text


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(_number(float(value)) if isinstance(value, float) else _integer(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not JSON-native: {type(value).__name__}")


def _integer(value: int) -> str:
    if abs(value) <= _MAX_SAFE_INTEGER:
        return str(value)
    # Every JSON number is a double (RFC 8785, 3.2.2.3). Large doubles are written without an
    # exponent up to 1e21 ("10000000000000000"), and parsers read them back as integers: such
    # an integer stands for the nearest double, or a stored event could not be hashed again.
    try:
        return _number(float(value))
    except OverflowError:
        raise ValueError(f"{value} is beyond the range of JSON numbers (doubles)") from None


class _NeedsReferenceError(Exception):
    """The fast path cannot vouch for this value; the reference serialiser decides."""


def _prepare(value: Any) -> Any:
    """Swap floats for their JCS text, so orjson writes everything else.

    orjson's string escaping equals JCS's, and with only ASCII keys its key order (by code
    point) equals JCS's (by UTF-16 unit). Anything else goes to the reference path. A
    container with nothing to swap is returned as it is (no copy).
    """
    kind = type(value)
    if kind is dict:
        prepared = None
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise _NeedsReferenceError
            kind = type(item)
            if kind in _PLAIN:
                continue
            if kind is int:
                if -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                    continue
                raise _NeedsReferenceError
            # A float member (most numbers of a payload) swapped here, without a call to itself.
            swapped = _float_fragment(item) if kind is float else _prepare(item)
            if swapped is not item:
                if prepared is None:
                    prepared = dict(value)
                prepared[key] = swapped
        return value if prepared is None else prepared
    if kind is float:
        return _float_fragment(value)
    if kind is list or kind is tuple:
        items = [item if type(item) in _PLAIN else _prepare(item) for item in value]
        unchanged = kind is list and all(a is b for a, b in zip(items, value, strict=True))
        return value if unchanged else items
    if kind is int:
        if abs(value) > _MAX_SAFE_INTEGER:
            raise _NeedsReferenceError
        return value
    if value is None or kind is bool or kind is str:
        return value
    raise _NeedsReferenceError


_PLAIN = frozenset({str, bool, type(None)})


@lru_cache(maxsize=4096)
def _float_fragment(value: float) -> orjson.Fragment:
    return orjson.Fragment(_number(value).encode())


_ORJSON_PLAIN_FLOATS = (1e-5, 1e16)
"""Where orjson writes a float as JCS does, if it is not integral: the shortest round-trip
digits, without exponent (JCS writes integral floats without ``.0``, below 1e-6 and from 1e21
with an exponent; orjson with one below 1e-5 and from 1e16)."""


def written_canonically_by_orjson(value: Any) -> bool:
    """Whether ``orjson.dumps(value, option=OPT_SORT_KEYS)`` is already ``canonical_bytes(value)``:
    only ASCII keys, integers within ±2**53, and floats that orjson writes as JCS does."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain(item):
                return False
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    return _plain(value)


def _plain(value: Any) -> bool:
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER  # type: ignore[no-any-return]  # an int comparison
    if kind is float:
        low, high = _ORJSON_PLAIN_FLOATS
        return low <= abs(value) < high and value != int(value)  # type: ignore[no-any-return]  # a float comparison
    if kind is dict or kind is list:
        return written_canonically_by_orjson(value)
    return False


def reference_canonical_json(value: Any) -> str:
    """The plain, obviously-JCS serialiser; :func:`canonical_bytes` must always agree with it."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def canonical_bytes(value: Any) -> bytes:
    """``value`` (JSON-native: dict, list, str, int, float, bool, None) as JCS UTF-8 bytes."""
    try:
        return orjson.dumps(_prepare(value), option=orjson.OPT_SORT_KEYS)
    except (_NeedsReferenceError, orjson.JSONEncodeError):
        return reference_canonical_json(value).encode("utf-8")


def canonical_json(value: Any) -> str:
    """``value`` as JCS text."""
    return canonical_bytes(value).decode("utf-8")
