"""``verify`` of a SQLite ledger on several processes, with the serial verifier's reports.

The ledger's (org, sequence) order is cut into parts: whole orgs together, and the chain of an
org longer than a range cut into ranges of sequences (``low <= sequence < high``; the last one
has no end, so that it also holds what SQLite orders after the numbers). This process takes
the parts from the back, each one no worker has started, and ``processes - 1`` worker
processes take them from the front once they have started (a fresh interpreter, ~0.3 s of
CPU): nothing waits for a worker's start-up but, at the end, the pool's shutdown. A worker
opens the file read-only itself and is given only the path and the part's bounds. A range
after an org's first starts from a claim: the event before it is number ``low - 1`` and its
hash is the ``hash`` column of the row before. The parent takes the parts' verdicts in order
and checks each claim against what the range before it ended with (its event count and its
last event's hash, as verified): where they agree, the worker verified the range exactly as
the serial verifier would have, from the same state; where they do not (a gap or a broken
link at the boundary, a changed column), the parent verifies that range again itself from the
true state. An org's later ranges do not count once one is broken. So every report is the
serial one: the same first bad sequence, problem, event count, head and location.
"""

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import chain
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

from events.chain import ChainReport, ChainVerifier
from events.sqlite_log import SqliteEventLog
from schemas.envelope import GENESIS_HASH

MIN_RANGES = 10
"""A ledger of fewer events than this many ranges is verified serially: a worker's start-up
(~0.3 s of CPU) would cost more than it saves (100,000 events take ~0.5 s of CPU)."""


class Part(NamedTuple):
    """A part of the ledger's (org, sequence) order that one worker verifies."""

    org_id: str | None
    """One org's range of sequences; None: whole orgs, those after ``after`` up to ``upto``."""
    after: str | None = None
    upto: str | None = None
    low: int = 1
    high: int | None = None


class Verdict(NamedTuple):
    """What a worker found in a part."""

    start: tuple[int, Any] | None
    """A range's claim: the event count and head it started from (None: the org's start)."""
    reports: list[ChainReport]
    """One per org it read a row of."""


def plan(lengths: dict[str, int], org_id: str | None, range_events: int) -> list[Part]:
    """The parts of a ledger whose orgs' chains have these ``lengths`` (in org order)."""
    parts: list[Part] = []
    after: str | None = None  # the orgs of the next group come after this one
    last: str | None = None  # the last org of the open group
    events = 0
    for org, length in lengths.items():
        if length > range_events:
            if last is not None:
                parts.append(Part(None, after, last))
                last, events = None, 0
            lows = range(1, length + 1, range_events)
            highs = [*lows[1:], None]  # the last range has no end
            parts.extend(Part(org, low=lo, high=hi) for lo, hi in zip(lows, highs, strict=True))
            after = org
            continue
        last, events = org, events + length
        if events >= range_events:
            parts.append(Part(None, after, last))
            after, last, events = last, None, 0
    if last is not None:
        # The last group has no end; one org's alone is that org's single range.
        parts.append(Part(None, after, None) if org_id is None else Part(org_id))
    return parts


def verify_in_ranges(
    log: SqliteEventLog, org_id: str | None, processes: int, range_events: int
) -> list[ChainReport] | None:
    """``log.verify(org_id)`` on ``processes`` processes (this one and ``processes - 1``
    workers); None where the serial verifier is the one to use: a ledger of fewer than
    :data:`MIN_RANGES` ranges' events, or one whose ``org_id`` columns are not all text (see
    :meth:`SqliteEventLog.chain_lengths`)."""
    lengths = log.chain_lengths(org_id)
    if lengths is None:
        return None
    parts = plan(lengths, org_id, range_events)
    if len(parts) < 2 or sum(lengths.values()) < MIN_RANGES * range_events:
        return None  # a small ledger: the workers' start-up would cost more than it saves
    path = str(log.path)
    # spawn: a fresh interpreter (never a fork of a process that may have threads).
    context = get_context("spawn")
    workers = min(processes - 1, len(parts))
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            # A trivial call each: a worker that has answered one has started. Parts go to the
            # workers only then (one queued for a worker still starting would wait with it).
            started = [pool.submit(int) for _ in range(workers)]
            futures: dict[int, Future[Verdict]] = {}
            here: dict[int, Verdict] = {}
            # This process takes the parts from the back, each one no worker has started
            # (it cancels its future); the workers take them from the front.
            for index in reversed(range(len(parts))):
                if not futures and any(call.done() for call in started):
                    futures = {i: pool.submit(verify_part, path, parts[i]) for i in range(index)}
                if index in futures and not futures[index].cancel():
                    break  # a worker has it, and the ones before it
                here[index] = verify_part(path, parts[index])
            verdicts = (here[i] if i in here else futures[i].result() for i in range(len(parts)))
            return merge(log, parts, verdicts)
    except BrokenProcessPool:  # a worker killed (out of memory), or none could start
        return None


def verify_part(path: str, part: Part) -> Verdict:
    """A worker's verdict on one part of the ledger at ``path`` (opened read-only)."""
    log = SqliteEventLog(Path(path), read_only=True)
    try:
        verifier = ChainVerifier()
        if part.org_id is None:
            verifier.add_rows(log.org_rows(part.after, part.upto))
            return Verdict(None, verifier.reports())
        start = None
        if part.low > 1:
            start = (part.low - 1, log.hash_before(part.org_id, part.low))
            # A head that is not text is a claim that cannot hold: the parent verifies again.
            verifier.resume(part.org_id, start[0], start[1] if type(start[1]) is str else "")
        chunks = log.sequence_rows(part.org_id, part.low, part.high)
        first = next(chunks, None)
        if first is None:
            return Verdict(start, [])
        verifier.add_rows(chain((first,), chunks))
        return Verdict(start, [verifier.report(part.org_id)])
    finally:
        log.close()


def merge(
    log: SqliteEventLog, parts: Sequence[Part], verdicts: Iterator[Verdict]
) -> list[ChainReport]:
    """The serial verifier's reports from the parts' verdicts, taken in order (a range whose
    claim does not hold verified again here, from the true state)."""
    reports: dict[str | None, ChainReport] = {}
    for part, verdict in zip(parts, verdicts, strict=True):
        org = part.org_id
        if org is None:
            reports.update((report.org_id, report) for report in verdict.reports)
            continue
        before = reports.get(org)
        if not verdict.reports or (before is not None and not before.ok):
            continue  # no event in the range, or its chain broke in an earlier one
        state = (before.events, before.head_hash) if before else (0, GENESIS_HASH)
        if (verdict.start or (0, GENESIS_HASH)) == state:
            reports[org] = verdict.reports[0]
            continue
        verifier = ChainVerifier()
        verifier.resume(org, *state)
        verifier.add_rows(log.sequence_rows(org, part.low, part.high))
        reports[org] = verifier.report(org)
    return [reports[org] for org in sorted(reports, key=lambda org: (org is None, org or ""))]
