"""Where a process's anonymous memory is, by owner, at one moment (``memory_profile.py --split``).

- glibc's malloc (Python's objects of more than 512 bytes, pyarrow's buffers: its pool is the
  C library's here, :mod:`projections.arrow_rows`): ``mallinfo2``, all arenas, in use and free
  (free but resident where a trim could not hand it back);
- pyarrow's pool: the bytes it holds (part of glibc's in use);
- Python's small-object allocator (pymalloc's arenas: its own mappings);
- chDB's allocator (jemalloc, inside its library): allocated and resident, from
  ``system.jemalloc_stats``; the engine's own account (``MemoryTracking``) and the merges
  running (``Merge``), from ``system.metrics``;
- the anonymous pages of the mapped files (relocations) and the threads' stacks, from smaps.

Linux and glibc only. Reading smaps and chDB's statistics takes a few ms: a split is taken only
as the resident anonymous memory reaches a new high (:class:`AnonSplits`).
"""

import ctypes
import os
import re
import sys
import threading
import time
from typing import Any

from benchmarks.figures import process_memory

MiB = 2**20
_JEMALLOC = re.compile(r"Allocated: (\d+), active: \d+, metadata: \d+.*?resident: (\d+)")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def glibc() -> dict[str, int]:
    """glibc's arenas (MiB): ``heap`` (sbrk'd and per-thread heaps) and ``mapped`` (blocks
    with their own mapping), of which ``in_use``; the rest of ``heap`` is ``free``."""
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {
        "heap": info.arena // MiB,
        "in_use": info.uordblks // MiB,
        "free": info.fordblks // MiB,
        "mapped": info.hblkhd // MiB,
    }


def pymalloc() -> int:
    """The bytes (MiB) of pymalloc's arenas (CPython's ``_debugmallocstats``, which writes to
    the C stderr: read through a pipe)."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write)
    text = b""
    while chunk := os.read(read, 1 << 16):
        text += chunk
    os.close(read)
    found = re.search(rb"Total\s+=\s+([\d,]+)", text)
    return int(found.group(1).replace(b",", b"")) // MiB if found else -1


def smaps_anonymous() -> dict[str, int]:
    """Anonymous pages (MiB) of the mapped files (relocated pages) and of the threads' stacks
    (8 MiB mappings), and of everything else."""
    found = {"files": 0, "stacks": 0, "other": 0}
    kind = "other"
    with open("/proc/self/smaps") as lines:
        for line in lines:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                fields = line.split()
                low, high = (int(end, 16) for end in fields[0].split("-"))
                name = fields[5] if len(fields) > 5 else ""
                if name.startswith("/"):
                    kind = "files"
                elif not name and high - low in (8 * MiB, 8 * MiB + 4096):
                    kind = "stacks"
                else:
                    kind = "other"
            elif line.startswith("Anonymous:"):
                found[kind] += int(line.split()[1])
    return {name: kb // 1024 for name, kb in found.items()}


def chdb(client: Any) -> dict[str, int]:
    """chDB's allocator and account (MiB) and its merges running, on ``client`` (a connection
    of its own: this runs beside the store's)."""
    found: dict[str, int] = {}
    rows = client.query(
        "SELECT metric, value FROM system.metrics WHERE metric IN ('MemoryTracking', 'Merge')"
    ).result_rows
    for name, value in rows:
        found[str(name)] = int(value) // MiB if name == "MemoryTracking" else int(value)
    text = client.raw_query("SELECT * FROM system.jemalloc_stats", fmt="TabSeparated").decode()
    if stats := _JEMALLOC.search(text):
        found["jemalloc_allocated"] = int(stats.group(1)) // MiB
        found["jemalloc_resident"] = int(stats.group(2)) // MiB
    return found


def split(client: Any) -> dict[str, Any]:
    """Every part above, beside the process's RssAnon before and after reading them."""
    import pyarrow as pa  # type: ignore[import-untyped]  # no type hints

    before = process_memory()
    found: dict[str, Any] = {
        "RssAnon": before["RssAnon"],
        "RssFile": before["RssFile"],
        "glibc": glibc(),
        "pyarrow": pa.total_allocated_bytes() // MiB,
        "pymalloc": pymalloc(),
        "smaps": smaps_anonymous(),
        "chdb": chdb(client),
    }
    found["RssAnon after"] = process_memory()["RssAnon"]
    return found


class AnonSplits:
    """Every 20 ms, RssAnon; a :func:`split` each time it passes the last split's by 3 MiB
    (on ``client``, a chDB connection of its own). :attr:`highest`: the split at the highest."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.highest: dict[str, Any] | None = None
        self.max_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = 0
        while not self._stop.is_set():
            anon = process_memory()["RssAnon"]
            self.max_anon = max(self.max_anon, anon)
            if anon >= last + 3:
                last = anon
                self.highest = {"at": time.monotonic(), **split(self.client)}
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def print(self) -> None:
        found = self.highest
        if found is None:
            return
        glibc_, chdb_, smaps = found["glibc"], found["chdb"], found["smaps"]
        print(
            f"  highest RssAnon sampled {self.max_anon} MiB; split at {found['RssAnon']} "
            f"(-> {found['RssAnon after']} after the split's reads; RssFile {found['RssFile']}):\n"
            f"    glibc arenas {glibc_['heap']} (in use {glibc_['in_use']}, free "
            f"{glibc_['free']}) + own mappings {glibc_['mapped']}; of it pyarrow's pool "
            f"{found['pyarrow']}\n"
            f"    chDB's jemalloc resident {chdb_.get('jemalloc_resident')} (allocated "
            f"{chdb_.get('jemalloc_allocated')}; MemoryTracking {chdb_.get('MemoryTracking')}, "
            f"merges running {chdb_.get('Merge')})\n"
            f"    pymalloc arenas (mapped) {found['pymalloc']}; stacks {smaps['stacks']}; "
            f"mapped files' own pages {smaps['files']}"
        )
