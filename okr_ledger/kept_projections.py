"""The embedded projections kept open between the reads of a long-lived process (the server).

Opening the chDB store and the ledger costs 140-190 ms at 1,000,000 check-ins; the catch-up's
check when nothing is new and a ``progress`` query cost ~25 ms together. A server that opened
the store for every read spent most of each read opening it. :class:`KeptProjections` opens
the store and the ledger's read-only connection at a read, catches up before every read (one
cheap check when nothing is new: :func:`okr_ledger.embedded_runtime.catch_up`; of the ledger
alone while the store's checkpoints are known, :meth:`_Opened.checkpoints`) with a
projector it keeps too (its state stays loaded: a new event costs its own rows, not a load of
the saved state), and closes all of it once ``idle_s`` seconds pass without a read, or after a
read once it has been open :data:`MAX_OPEN_S`. chDB lets one process at a time open a store,
so a CLI query in another process works again while the server is idle. An embedded store
opens in a process of its own (:mod:`okr_ledger.store_host`), which this one keeps between
opens: chDB leaves threads behind in the process at each close.

With ``shared`` (``serve --workers N``: N processes of one server, each with its own reader,
the store served to them all by the supervisor's store process) the processes take turns: a
read holds an exclusive ``flock`` on :data:`SHARED_LOCK` in the data directory while it
catches up and answers. Each keeps its client between reads, but neither its projector nor the
store's checkpoints, which the others' catch-ups change (:class:`_Opened`). A read that cannot
have its turn within :data:`TURN_WAIT_S` is unavailable (503). A shared reader whose store
opens in a child of its own (no supervisor's) closes it after every read: kept open, it would
shut the other processes out.
"""

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, TypeVar

from okr_ledger.embedded_runtime import catch_up, projecting
from okr_ledger.runtime import no_progress
from okr_ledger.settings import Settings
from okr_ledger.store_host import PublishedStore, StoreHost
from okr_ledger.wiring import open_event_log, open_projection_store
from processors.backlog import nothing_new, read_backlog
from schemas.errors import ProjectionUnavailableError, UnknownNameError

if TYPE_CHECKING:
    from processors.runner import EmbeddedRunner
    from projections.store import ProjectionStore

T = TypeVar("T")

MAX_OPEN_S = 300.0
"""The longest the store stays open, however often it is read: then it closes after a read
(the next one opens it anew, ~150-200 ms at 1M events). That frees what the projector loaded
(a key result's check-ins, once a correction needed them) and lets another process that waits
for the store (a CLI query, ``rebuild``) open it between two reads."""


SHARED_LOCK = "serve-readers.lock"
"""The file (in the data directory) whose ``flock`` gives one worker process at a time the
store."""
TURN_WAIT_S = 30.0
"""How long a read waits for its turn at the store (behind its own process's reads, and when
shared the other processes') before it is unavailable (503): reads queued behind a slow one
(a long catch-up, a store's process that stopped answering) do not pile up without end, each
holding one of the server's threads."""
_SHARED_POLL_S = 0.005


class KeptProjections:
    """One read at a time (an embedded store has one session); see the module docstring.
    ``shared``: one of several processes of a server (``idle_s`` is then 0 unless the store
    is the supervisor's, ``host`` a :class:`PublishedStore`)."""

    def __init__(
        self,
        settings: Settings,
        idle_s: float,
        *,
        shared: bool = False,
        host: "StoreHost | PublishedStore | None" = None,
    ) -> None:
        self.settings = settings
        self.shared = shared
        self._host = StoreHost(settings) if host is None else host
        """Where the store opens: an embedded one in a child process of this one, or (a worker
        of ``serve --workers N``) in the supervisor's (:mod:`okr_ledger.store_host`)."""
        # Shared, a store this process opens would shut the other processes out while open;
        # the supervisor's is open to them all.
        self.idle_s = 0.0 if shared and not isinstance(self._host, PublishedStore) else idle_s
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
        with self._turn():
            self._reads += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._opened is not None and not self._host.alive:
                self._close()  # its store's process ended since the last read
            try:
                opened = self._opened = self._opened or _Opened(
                    self.settings, self._host, alone=not self.shared, at_once=self._at_once()
                )
                backlog = read_backlog(opened.log, opened)
                if not nothing_new(opened.log, backlog):
                    opened.forget_checkpoints()  # this catch-up writes them
                catch_up(opened.store, opened.log, self.settings, no_progress, "projecting",
                         runner=opened.runner, backlog=backlog)  # fmt: skip
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

    def _at_once(self) -> bool:
        """Whether an answer's statements go at once: to a store's process (this one's child,
        or the supervisor's once its client is kept between reads; opened for each read, a
        connection more would cost more, ~10 ms, than running them at once saves)."""
        if isinstance(self._host, PublishedStore):
            return self.idle_s > 0
        return self._host.embedded

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn at the store: the lock, and when shared the file lock too, both
        within one :data:`TURN_WAIT_S` (so reads queued in this process wait no longer)."""
        deadline = time.monotonic() + TURN_WAIT_S
        if not self._lock.acquire(timeout=TURN_WAIT_S):
            raise _busy(self.shared)
        try:
            if not self.shared:
                yield
                return
            with _shared_turn(self.settings, deadline):
                yield
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close()
            self._host.close()

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


@contextmanager
def _shared_turn(settings: Settings, deadline: float) -> Iterator[None]:
    """The store to this process alone among the server's workers (see the module docstring),
    if it has its turn before ``deadline`` (``time.monotonic``)."""
    path = settings.data_dir / SHARED_LOCK
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _busy(True) from None
                time.sleep(_SHARED_POLL_S)
        yield  # closing the descriptor releases the lock
    finally:
        os.close(descriptor)


def _busy(shared: bool) -> ProjectionUnavailableError:
    whose = "the server's worker processes" if shared else "the server"
    return ProjectionUnavailableError(
        f"the projection store was busy with other reads of {whose} for {TURN_WAIT_S:.0f}s; "
        "try again"
    )


class _Opened:
    """The ledger's read-only connection, the store, and (``alone``) the projector over both.
    ``at_once``: an answer's statements go at once
    (:attr:`projections.store.ProjectionStore.served_chdb`).

    ``alone``: no other process writes the store while this is open (its child holds it, and
    serves it to this process only), so the projector keeps its state between reads, and the
    store's checkpoints are read once, then known until a catch-up writes them: a read that
    finds nothing new in the ledger sends no statement for its check. Else (``serve --workers
    N``: the others catch up too) both are had anew at each read, the projector only if
    something is new."""

    def __init__(
        self, settings: Settings, host: "StoreHost | PublishedStore", alone: bool, at_once: bool
    ) -> None:
        self.since = time.monotonic()
        self.alone = alone
        with ExitStack() as stack:
            self.log = open_event_log(settings, create=False, read_only=True)
            stack.callback(self.log.close)
            settings = stack.enter_context(host.opened())
            self.store: ProjectionStore = stack.enter_context(open_projection_store(settings))
            self.store.served_chdb = at_once
            self.runner: EmbeddedRunner | None = (
                stack.enter_context(projecting(self.store, self.log, settings)) if alone else None
            )
            self._stack = stack.pop_all()
        self._checkpoints: dict[str, dict[str, int]] | None = None

    def checkpoints(self) -> dict[str, dict[str, int]]:
        """The store's checkpoints (:class:`processors.backlog.Checkpoints`): see the class
        docstring."""
        if not self.alone:
            return self.store.checkpoints()
        if self._checkpoints is None:
            self._checkpoints = self.store.checkpoints()
        return self._checkpoints

    def forget_checkpoints(self) -> None:
        self._checkpoints = None

    def close(self) -> None:
        self._stack.close()
