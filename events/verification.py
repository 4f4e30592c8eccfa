"""Verifying stored events on every core: each event's own checks in worker processes, the
chain (sequence, link) in order here.

:func:`events.chain.examine` needs no other event, so a ledger's events are examined in
chunks by a process pool while this process reads the next ones and walks the chains
(:meth:`ChainVerifier.add_examined`). At most a few chunks are in flight: memory stays the
same whatever the size of the ledger. A small ledger is verified without starting the pool.
"""

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from multiprocessing.pool import AsyncResult

from events.chain import ChainVerifier, Examined, examine
from events.stored import StoredBytes

CHUNK = 2000
"""Events a worker examines at a time."""
IN_FLIGHT = 2
"""Chunks queued per worker (bounded: the reading never runs far ahead)."""


def _examine_all(chunk: list[StoredBytes]) -> list[Examined]:
    return [examine(stored) for stored in chunk]


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def verify_stored(stored: Iterable[StoredBytes], workers: int | None = None) -> ChainVerifier:
    """Verify ``stored`` (each org's events in order; orgs may interleave) with ``workers``
    processes (default: one per core; 1: all in this process). The verifier holds the result."""
    verifier = ChainVerifier()
    events = iter(stored)
    first = list(islice(events, CHUNK))
    for examined in _examine_all(first):
        verifier.add_examined(examined)
    workers = default_workers() if workers is None else workers
    if len(first) < CHUNK or workers <= 1:
        for one in events:
            verifier.add(one)
        return verifier
    with multiprocessing.get_context().Pool(workers) as pool:
        pending: deque[AsyncResult[list[Examined]]] = deque()
        for chunk in _chunks(events):
            pending.append(pool.apply_async(_examine_all, (chunk,)))
            if len(pending) >= IN_FLIGHT * workers:
                for examined in pending.popleft().get():
                    verifier.add_examined(examined)
        while pending:
            for examined in pending.popleft().get():
                verifier.add_examined(examined)
    return verifier


def _chunks(events: Iterator[StoredBytes]) -> Iterator[list[StoredBytes]]:
    while chunk := list(islice(events, CHUNK)):
        yield chunk
