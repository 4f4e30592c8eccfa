#!/usr/bin/env python3
"""Verify an ``okr-ledger export`` without OKR Ledger's code: Python standard library only.

Written from docs/ledger-format.md alone. Usage::

    python verify_ledger.py ledger.ndjson      # or: okr-ledger export | python verify_ledger.py

Prints one line per org, ``OK`` with its event count and head hash, or ``BROKEN`` with the
first sequence whose bytes (not the canonical form of the event), keys, position, link
(prev_hash) or content (hash) does not match. Reads line by line: orgs may interleave.
Exit 0 when every chain is intact, 4 when any is broken, 2 when the file cannot be read.
"""

import argparse
import hashlib
import json
import math
import sys
from decimal import Decimal
from typing import Any

GENESIS = "0" * 64
KEYS = {  # every event has exactly these (docs/ledger-format.md, section 2)
    *("sequence", "event_id", "org_id", "type", "schema_version", "occurred_at", "recorded_at"),
    *("actor", "source", "source_event_id", "correlation_id", "causation_id", "data"),
    *("prev_hash", "hash"),
}


def jcs_number(x: float) -> str:
    """ECMAScript Number.prototype.toString(), as RFC 8785 requires."""
    if not math.isfinite(x):
        raise ValueError("NaN and Infinity are not JSON")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + jcs_number(-x)
    # repr() gives the shortest digits that round-trip, as ECMAScript does; only the layout differs.
    _, digit_tuple, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), exponent + len(digits)  # x = 0.<digits> * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if n > 1 else '-'}{abs(n - 1)}"


def jcs(value: Any) -> str:
    """RFC 8785 canonical JSON of a parsed JSON value."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return jcs_number(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # escapes only " \ and controls < 0x20
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))  # UTF-16 code units
        return "{" + ",".join(jcs(key) + ":" + jcs(value[key]) for key in keys) + "}"
    raise TypeError(f"not JSON: {type(value).__name__}")


def event_hash(event: dict[str, Any]) -> str:
    body = {key: value for key, value in event.items() if key != "hash"}
    payload = str(event["prev_hash"]).encode("ascii") + jcs(body).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def problem(event: dict[str, Any], line: bytes, expected: int, prev: str) -> str | None:
    """What is wrong with one event of an org, given the org's expected sequence and head."""
    try:  # also catches a repeated key: the canonical form has each key once
        canonical = jcs(event).encode("utf-8") == line
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):  # NaN, 1e400, "\ud800"
        canonical = False
    if not canonical:
        return "the line is not the canonical form of its event"
    if set(event) != KEYS:
        return f"keys {sorted(set(event) ^ KEYS)} missing or unexpected"
    if event.get("sequence") != expected:
        return f"expected sequence {expected}, found {event.get('sequence')}"
    if event.get("prev_hash") != prev:
        return "prev_hash does not link to the previous event's hash"
    if event_hash(event) != event.get("hash"):
        return "content does not match its hash"
    return None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default="-", help="NDJSON export; - or none: stdin")
    path = parser.parse_args().file
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chains: dict[str, tuple[int, str]] = {}  # org -> events verified, head hash
    bad: dict[str, str] = {}  # org -> its first problem
    bad_lines = False
    for number, raw in enumerate(stream, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        try:
            event = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError) as error:  # also UnicodeDecodeError
            print(f"BROKEN line {number}: not JSON ({error})")
            bad_lines = True
            continue
        if not isinstance(event, dict) or not isinstance(event.get("org_id"), str):
            print(f"BROKEN line {number}: not an event with an org_id")
            bad_lines = True
            continue
        org = event["org_id"]
        count, head = chains.setdefault(org, (0, GENESIS))
        if org not in bad:
            found = problem(event, line, count + 1, head)
            if found is None:
                chains[org] = count + 1, event["hash"]
            else:
                bad[org] = f"sequence {count + 1}: {found}"
    for org_id, (count, head) in sorted(chains.items()):
        print(
            f"BROKEN {org_id}: {bad[org_id]}"
            if org_id in bad
            else f"OK {org_id}: {count} events, head {head}"
        )
    if not chains and not bad_lines:
        print("no events")
    return 4 if bad or bad_lines else 0


if __name__ == "__main__":
    sys.exit(main())
