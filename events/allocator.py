"""The C library's allocator (glibc's malloc) of this process: its options and its trim.

A no-op where the C library has no such call (not glibc). An option the operator sets in the
environment (its ``MALLOC_*_`` variable, or ``glibc.malloc.<name>`` in ``GLIBC_TUNABLES``)
wins over the one the code sets.
"""

import ctypes
import os
from functools import cache
from typing import Any

M_MMAP_THRESHOLD = -3
"""glibc's ``malloc.h``: blocks of at least this size get their own mapping."""
M_ARENA_MAX = -8
"""glibc's ``malloc.h``: the most arenas (threads get arenas of their own, up to 8 per core)."""
_SETTINGS = {M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", "mmap_threshold")}
_SETTINGS[M_ARENA_MAX] = ("MALLOC_ARENA_MAX", "arena_max")
"""Each option's environment variable and tunable, which the operator may set instead."""


@cache
def c_library() -> Any:
    """This process's own symbols (glibc's ``mallopt``, ``malloc_trim``, where it is), loaded
    once: the projection store trims after every commit."""
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def set_option(option: int, value: int) -> None:
    """``mallopt(option, value)``, unless the environment sets the option itself."""
    variable, tunable = _SETTINGS[option]
    if variable in os.environ or f"glibc.malloc.{tunable}" in os.environ.get("GLIBC_TUNABLES", ""):
        return  # the operator's choice
    mallopt = getattr(c_library(), "mallopt", None)
    if mallopt is not None:
        mallopt(option, value)


def trim() -> None:
    """Hand the pages the allocator keeps free (each thread's heap) back to the kernel."""
    malloc_trim = getattr(c_library(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
