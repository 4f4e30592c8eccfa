#!/usr/bin/env python3
"""Verify an ``okr-ledger export`` without OKR Ledger's code: Python standard library only.

Written from docs/ledger-format.md alone. Usage::

    python verify_ledger.py ledger.ndjson      # or: okr-ledger export | python verify_ledger.py

Prints one line per org, ``OK`` with its event count and head hash, or ``BROKEN`` with the
first sequence whose position, link (prev_hash) or content (hash) does not match.
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


def first_problem(events: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(sequence, problem) of the first event that breaks the chain, or None."""
    prev_hash = GENESIS
    for expected, event in enumerate(events, start=1):
        if event.get("sequence") != expected:
            return expected, f"expected sequence {expected}, found {event.get('sequence')}"
        if event.get("prev_hash") != prev_hash:
            return expected, "prev_hash does not link to the previous event's hash"
        try:
            intact = event_hash(event) == event.get("hash")
        except (TypeError, ValueError):  # not canonicalisable: altered
            intact = False
        if not intact:
            return expected, "content does not match its hash"
        prev_hash = event["hash"]
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default="-", help="NDJSON export; - or none: stdin")
    path = parser.parse_args().file
    try:
        if path == "-":
            lines = sys.stdin.buffer.read().splitlines()
        else:
            with open(path, "rb") as stream:
                lines = stream.read().splitlines()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    orgs: dict[str, list[dict[str, Any]]] = {}  # org -> its events, in file order
    broken = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line, parse_constant=_reject_constant)
        except ValueError as error:  # also UnicodeDecodeError
            print(f"BROKEN line {number}: not JSON ({error})")
            broken = True
            continue
        if not isinstance(event, dict) or not isinstance(event.get("org_id"), str):
            print(f"BROKEN line {number}: not an event with an org_id")
            broken = True
            continue
        orgs.setdefault(event["org_id"], []).append(event)

    for org_id in sorted(orgs):
        events = orgs[org_id]
        problem = first_problem(events)
        if problem is None:
            print(f"OK {org_id}: {len(events)} events, head {events[-1]['hash']}")
        else:
            print(f"BROKEN {org_id}: sequence {problem[0]}: {problem[1]}")
            broken = True
    if not orgs and not broken:
        print("no events")
    return 4 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
