"""Cores for :class:`processors.sequencer_core.ProcessRunner` in the tests: the real child
process and pipe, with methods whose timing the test decides (importable: the child is spawned
and finds its core by name)."""

import os
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

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        for gate in self._gates.values():
            gate.set()
