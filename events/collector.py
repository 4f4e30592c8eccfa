"""Pausing Python's cyclic garbage collector around a batch."""

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
"""Blocks inside :func:`collector_paused` now, in every thread (the collector is global)."""
_resume = False
"""Whether the collector ran when the first of them began (it runs again after the last)."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for the block.

    A batch allocates many objects that live on (outcomes, state, rows) and makes no garbage
    cycles, yet each allocation burst triggers collections that rescan everything alive.
    Garbage is still collected once the block ends. Pauses overlap across threads (the HTTP
    writer's group, a catch-up for a read): the collector runs again when the last one ends.
    """
    global _pauses, _resume  # noqa: PLW0603 - the collector is process-wide
    with _lock:
        if not _pauses:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if not _pauses and _resume:
                gc.enable()
