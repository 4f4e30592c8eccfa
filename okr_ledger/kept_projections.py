"""The embedded projections kept open between the reads of a long-lived process (the server).

Opening the chDB store and the ledger costs 140-190 ms at 1,000,000 check-ins; the catch-up's
check when nothing is new and a ``progress`` query cost ~25 ms together. A server that opened
the store for every read spent most of each read opening it. :class:`KeptProjections` opens
the store and the ledger's read-only connection at a read, catches up before every read (one
cheap check when nothing is new: :func:`okr_ledger.embedded_runtime.catch_up`) with a
projector it keeps too (its state stays loaded: a new event costs its own rows, not a load of
the saved state), and closes all of it once ``idle_s`` seconds pass without a read, or after a
read once it has been open :data:`MAX_OPEN_S`. chDB lets one process at a time open a store,
so a CLI query in another process works again while the server is idle.
"""

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, TypeVar

from okr_ledger.embedded_runtime import catch_up, projecting
from okr_ledger.runtime import no_progress
from okr_ledger.settings import Settings
from okr_ledger.wiring import open_event_log, open_projection_store
from schemas.errors import UnknownNameError

if TYPE_CHECKING:
    from processors.runner import EmbeddedRunner
    from projections.store import ProjectionStore

T = TypeVar("T")

MAX_OPEN_S = 300.0
"""The longest the store stays open, however often it is read: then it closes after a read
(the next one opens it anew, ~150-200 ms at 1M events). That frees what the projector loaded
(a key result's check-ins, once a correction needed them) and lets another process that waits
for the store (a CLI query, ``rebuild``) open it between two reads."""


class KeptProjections:
    """One read at a time (an embedded store has one session); see the module docstring."""

    def __init__(self, settings: Settings, idle_s: float) -> None:
        self.settings = settings
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._opened: _Opened | None = None
        self._reads = 0
        """Reads begun: an idle timer closes only if no read began after it was set."""
        self._timer: threading.Timer | None = None

    @property
    def is_open(self) -> bool:
        return self._opened is not None

    def read(self, answer: "Callable[[ProjectionStore], T]") -> T:
        """``answer(store)`` on the projections caught up with the ledger. A failure closes
        everything (the next read opens it anew), but for an unknown name in the answer."""
        with self._lock:
            self._reads += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            try:
                opened = self._opened = self._opened or _Opened(self.settings)
                catch_up(opened.store, opened.log, self.settings, no_progress, "projecting",
                         runner=opened.runner)  # fmt: skip
            except BaseException:
                self._close()
                raise
            try:
                result = answer(opened.store)
            except UnknownNameError:  # the reader's mistake: the store is fine
                self._close_when_idle(opened)
                raise
            except BaseException:  # anything else may have left the session unusable
                self._close()
                raise
            self._close_when_idle(opened)
            return result

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close()

    def _close_when_idle(self, opened: "_Opened") -> None:
        if self.idle_s <= 0 or time.monotonic() - opened.since >= MAX_OPEN_S:
            self._close()
            return
        timer = threading.Timer(self.idle_s, self._idle, (self._reads,))
        timer.daemon = True
        timer.start()
        self._timer = timer

    def _idle(self, reads: int) -> None:
        with self._lock:
            if reads == self._reads:  # no read since this timer was set
                self._close()

    def _close(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()


class _Opened:
    """The ledger's read-only connection, the store, and the projector over both."""

    def __init__(self, settings: Settings) -> None:
        self.since = time.monotonic()
        with ExitStack() as stack:
            self.log = open_event_log(settings, create=False, read_only=True)
            stack.callback(self.log.close)
            self.store: ProjectionStore = stack.enter_context(open_projection_store(settings))
            self.runner: EmbeddedRunner = stack.enter_context(
                projecting(self.store, self.log, settings)
            )
            self._stack = stack.pop_all()

    def close(self) -> None:
        self._stack.close()
