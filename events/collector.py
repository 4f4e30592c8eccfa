"""Pausing Python's cyclic garbage collector around a batch."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) for the block.

    A batch allocates many objects that live on (outcomes, state, rows) and makes no garbage
    cycles, yet each allocation burst triggers collections that rescan everything alive.
    Garbage is still collected once the block ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
