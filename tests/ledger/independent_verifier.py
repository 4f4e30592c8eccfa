"""An independent verifier of an exported OKR Ledger, written from the ledger format alone.

It uses the Python standard library only and nothing of the project, so that it can stand
for what an auditor writes in any language. The facts it relies on:

- ``okr-ledger export`` writes NDJSON: one event object per line, with exactly the keys
  sequence, event_id, org_id, type, schema_version, occurred_at, recorded_at, actor, source,
  source_event_id, correlation_id, causation_id, data, prev_hash, hash.
- Each org has its own chain: sequence runs 1, 2, 3... with no gap; the first event's
  ``prev_hash`` is 64 zeros (``"0" * 64``) and every later one's is the previous event's hash.
- ``hash`` is the lowercase hex SHA-256 of the ``prev_hash`` (64 ASCII hex characters)
  followed by the UTF-8 bytes of the JSON Canonicalization Scheme (RFC 8785) form of the event
  object without its ``hash`` key.
- Each line is byte for byte the canonical form of its event (``hash`` included), UTF-8. So a
  line in which an object repeats a key is never canonical, whichever value a parser keeps.
- JCS: no white space; object keys sorted by their UTF-16 code units; strings escaped
  minimally (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t`` and ``\\u00xx`` for other control
  characters); numbers as ECMAScript's ``Number.prototype.toString`` writes IEEE-754 doubles.
"""

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

GENESIS = "0" * 64
KEYS = frozenset(
    {
        "sequence",
        "event_id",
        "org_id",
        "type",
        "schema_version",
        "occurred_at",
        "recorded_at",
        "actor",
        "source",
        "source_event_id",
        "correlation_id",
        "causation_id",
        "data",
        "prev_hash",
        "hash",
    }
)


class MalformedExportError(ValueError):
    """A line is not a JSON object with an org_id: nothing can be said about its chain."""


# --- JCS (RFC 8785) -----------------------------------------------------------------------


def es_number(x: float) -> str:
    """ECMA-262 Number::toString(x) for a finite double."""
    if not math.isfinite(x):
        raise ValueError("JSON has no NaN or Infinity")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + es_number(-x)
    # repr() gives the shortest digit string that reads back as x, which is ECMAScript's s.
    sign, digit_tuple, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert sign == 0
    assert isinstance(exponent, int)
    s = "".join(str(d) for d in digit_tuple)
    k = len(s)
    n = exponent + k  # x = s * 10**(n - k)
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = n - 1
    mantissa = s if k == 1 else s[0] + "." + s[1:]
    return mantissa + "e" + ("+" if e > 0 else "-") + str(abs(e))


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_SHORT_ESCAPES["\t"] = "\\t"


def jcs_string(text: str) -> str:
    parts = ['"']
    for ch in text:
        if ch in _SHORT_ESCAPES:
            parts.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def utf16_units(text: str) -> list[int]:
    units: list[int] = []
    for ch in text:
        code = ord(ch)
        if code < 0x10000:
            units.append(code)
        else:
            code -= 0x10000
            units += [0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF)]
    return units


def jcs(value: Any) -> str:
    """The RFC 8785 text of a parsed JSON value."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return es_number(float(value))  # every JSON number is an IEEE-754 double
    if isinstance(value, str):
        return jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=utf16_units)
        return "{" + ",".join(jcs_string(k) + ":" + jcs(value[k]) for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


# --- the chain ----------------------------------------------------------------------------


def event_hash(event: dict[str, Any]) -> str:
    body = {key: value for key, value in event.items() if key != "hash"}
    prev_hash = event.get("prev_hash")
    if not isinstance(prev_hash, str):
        raise ValueError("prev_hash is not a string")
    return hashlib.sha256(prev_hash.encode("ascii") + jcs(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OrgVerdict:
    org_id: str
    ok: bool
    events: int
    """Events verified before the first bad one (all of them when ``ok``)."""
    first_bad_sequence: int | None = None
    problem: str | None = None


def _reject_constant(name: str) -> Any:
    raise MalformedExportError(f"{name} is not JSON")


def parse_line(line: bytes | str) -> dict[str, Any]:
    try:
        event = json.loads(line, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise MalformedExportError(str(error) or type(error).__name__) from error
    if not isinstance(event, dict) or not isinstance(event.get("org_id"), str):
        raise MalformedExportError("a line is not an event object with an org_id")
    return event


def _canonical_problem(event: dict[str, Any], line: bytes) -> str | None:
    try:
        canonical = jcs(event).encode("utf-8")
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError) as error:
        return f"cannot be put in canonical form: {error}"
    return None if canonical == line else "the line is not the canonical form of its event"


def _problem(event: dict[str, Any], line: bytes, expected: int, prev_hash: str) -> str | None:
    canonical = _canonical_problem(event, line)
    if canonical is not None:
        return canonical
    if set(event) != KEYS:
        return f"keys {sorted(set(event) ^ KEYS)} missing or unexpected"
    if type(event["sequence"]) is not int or event["sequence"] != expected:
        return f"expected sequence {expected}, found {event['sequence']!r}"
    if event["prev_hash"] != prev_hash:
        return "prev_hash does not link to the previous event"
    try:
        computed = event_hash(event)
    except (ValueError, TypeError, UnicodeEncodeError) as error:
        return f"cannot hash: {error}"
    if computed != event["hash"]:
        return "hash does not match the content"
    return None


def verify_lines(lines: Iterable[bytes | str]) -> dict[str, OrgVerdict]:
    """The verdict on every org found in an export, keyed by org id.

    Orgs may be interleaved; each org's events must appear in sequence order.
    """
    expected: dict[str, int] = {}
    heads: dict[str, str] = {}
    broken: dict[str, OrgVerdict] = {}
    for line in lines:
        if not line.strip():
            raise MalformedExportError("a blank line: an export has none")
        data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        data = data[:-1] if data.endswith(b"\n") else data
        event = parse_line(data)
        org = event["org_id"]
        if org in broken:
            continue
        sequence = expected.setdefault(org, 1)
        problem = _problem(event, data, sequence, heads.setdefault(org, GENESIS))
        if problem is not None:
            broken[org] = OrgVerdict(org, False, sequence - 1, sequence, problem)
            continue
        heads[org] = event["hash"]
        expected[org] = sequence + 1
    return {
        org: broken.get(org) or OrgVerdict(org, True, expected[org] - 1) for org in sorted(expected)
    }


if __name__ == "__main__":  # usage: python independent_verifier.py < export.ndjson
    import sys

    verdicts = verify_lines(sys.stdin.buffer)
    for verdict in verdicts.values():
        print(json.dumps(verdict.__dict__))
    sys.exit(0 if all(v.ok for v in verdicts.values()) else 4)
