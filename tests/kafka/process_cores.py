"""Cores for :class:`processors.sequencer_core.ProcessRunner` in the tests: the real child
process and pipe, with methods whose timing the test decides (importable: the child is spawned
and finds its core by name)."""

import ctypes
import os
import tempfile
import threading
import time
from typing import Any

from processors.kafka_config import WorkerConfig


class ScriptedCore:
    """Calls that wait at named gates, sleep, fail or say which process runs them."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _gate(self, name: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(name, threading.Event())

    def wait(self, name: str, value: Any) -> Any:
        """``value``, once gate ``name`` is opened."""
        self._gate(name).wait()
        return value

    def open(self, name: str) -> None:
        self._gate(name).set()

    def waiting(self, name: str) -> bool:
        """Whether a call waits at gate ``name`` (it was made, and is not opened)."""
        with self._lock:
            return name in self._gates and not self._gates[name].is_set()

    def sleep(self, seconds: float, value: Any) -> Any:
        time.sleep(seconds)
        return value

    def sleep_then_write(self, seconds: float, name: str) -> None:
        """Sleep, then write file ``name`` in the data dir (the call ran to its end)."""
        time.sleep(seconds)
        (self.config.data_dir / name).write_text("done")

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def pid(self) -> int:
        return os.getpid()

    def arenas(self, threads: int) -> int:
        """glibc's malloc arenas in this process once ``threads`` threads have each allocated
        (and hold) blocks at the same time (each thread gets an arena of its own, up to the
        cap): counted in what ``malloc_stats`` writes to standard error."""
        together = threading.Barrier(threads)

        def allocate() -> None:
            blocks = [bytearray(64_000) for _ in range(8)]
            together.wait()
            del blocks

        started = [threading.Thread(target=allocate) for _ in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
        with tempfile.TemporaryFile() as stats:
            stderr = os.dup(2)
            os.dup2(stats.fileno(), 2)
            try:
                ctypes.CDLL(None).malloc_stats()
            finally:
                os.dup2(stderr, 2)
                os.close(stderr)
            stats.seek(0)
            return stats.read().count(b"Arena ")

    def close(self) -> None:
        for gate in self._gates.values():
            gate.set()
        (self.config.data_dir / "closed").write_text("closed")
