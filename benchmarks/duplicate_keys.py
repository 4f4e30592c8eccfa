"""The cost of refusing duplicated keys in submissions, beside plain ``orjson.loads``.

Times, on the benchmark workload's check-in lines: ``orjson.loads`` alone (the anchor), the
sequencer's check (:func:`events.strict_json.duplicated_key` after ``orjson.loads``), and the
alternatives it was chosen over: ``json.loads`` with a Python ``object_pairs_hook`` (the C
scanner calls it once per object), alone and after ``orjson.loads``. Also the slow path: lines
with a backslash in a string, where the check falls back to ``json.loads``.

Usage: python benchmarks/duplicate_keys.py [--lines 100000] [--repeat 5]
"""

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workload import check_in
from events.strict_json import duplicated_key


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def orjson_only(line: bytes) -> object:
    return orjson.loads(line)


def orjson_then_check(line: bytes) -> object:
    document = orjson.loads(line)
    return duplicated_key(line, document)


def json_with_hook(line: bytes) -> object:
    return json.loads(line, object_pairs_hook=_pairs_hook)


def orjson_then_json_with_hook(line: bytes) -> object:
    orjson.loads(line)
    return json.loads(line, object_pairs_hook=_pairs_hook)


def rate(parse: Callable[[bytes], object], lines: list[bytes], repeat: int) -> float:
    """Best of ``repeat`` passes, in lines per second."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for line in lines:
            parse(line)
        best = min(best, time.perf_counter() - started)
    return len(lines) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines = [check_in("acme", i, 100) for i in range(args.lines)]
    escaped = [line.replace(b'"tests"', b'"te\\"sts"') for line in lines]
    assert all(duplicated_key(line, orjson.loads(line)) is None for line in lines + escaped)
    print(f"{len(lines):,} check-in lines, {sum(map(len, lines)) / len(lines):.0f} bytes each")
    anchor = rate(orjson_only, lines, args.repeat)
    print(f"  orjson.loads (anchor)                      {anchor:>12,.0f} lines/s")
    for name, parse, sample in (
        ("orjson.loads + duplicated_key (sequencer)", orjson_then_check, lines),
        ("  same, lines with a backslash (slow path)", orjson_then_check, escaped),
        ("json.loads + object_pairs_hook", json_with_hook, lines),
        ("orjson.loads + json.loads + hook", orjson_then_json_with_hook, lines),
    ):
        measured = rate(parse, sample, args.repeat)
        extra_us = (1 / measured - 1 / anchor) * 1e6
        print(
            f"  {name:<43}{measured:>12,.0f} lines/s  ({measured / anchor:.2f} of the anchor, "
            f"+{extra_us:.2f} us per line)"
        )


if __name__ == "__main__":
    main()
