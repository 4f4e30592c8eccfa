"""Group commit: concurrent requests' submissions decided together, in one writer thread.

Every SQLite transaction costs an fsync, so a transaction per request would cap the server at
a few hundred requests a second. Instead each request enqueues its submissions (or its
refusals) and waits; one thread owns the runtime's submitter, takes everything queued (up to
``OKR_HTTP_GROUP_MAX`` submissions), submits it in one ``submit_many`` (one ledger transaction
per ``OKR_SUBMIT_BATCH_SIZE``) and answers each request when the batch holding its last
submission is stored. On Kafka the same thread produces the group and waits for the worker's
outcomes; requests arriving meanwhile form the next group. If a group fails other than by
:data:`SHARED_FAILURES`, each request not yet answered is submitted again alone, so that only
the one that fails is told so.
"""

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from events.collector import collector_paused
from events.ledger import ReadLine
from okr_ledger.runtime import Refused, Submitter
from okr_ledger.submit_outcome import SubmitOutcome
from schemas.errors import LedgerError

log = logging.getLogger(__name__)

SHARED_FAILURES = (LedgerError, OSError)
"""Failures of the ledger or the machine (unavailable, locked past its timeout, a sequence
conflict after its retries, damage, the disk), not of one request's submissions: a group that
meets one is failed at once, not submitted again request by request."""

Outcomes = list[SubmitOutcome]


@dataclass(slots=True)
class _Job:
    """One request's submissions, or its refusals (one of the two is empty)."""

    lines: Sequence[ReadLine]
    refused: Sequence[Refused]
    future: "asyncio.Future[Outcomes]"
    loop: asyncio.AbstractEventLoop
    outcomes: Outcomes = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.lines) + len(self.refused)

    def finish(self, error: BaseException | None = None) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, self.outcomes, error)


def _settle(
    future: "asyncio.Future[Outcomes]", outcomes: Outcomes, error: BaseException | None
) -> None:
    if future.done():  # the request went away
        return
    if error is None:
        future.set_result(outcomes)
    else:
        future.set_exception(error)


class GroupCommitter:
    """See the module docstring. ``on_group(n)`` is told each group's size (metrics)."""

    def __init__(
        self,
        open_submitter: Callable[[], Submitter],
        max_group: int,
        on_group: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._open = open_submitter
        self.max_group = max_group
        self._on_group = on_group
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="okr-group-commit", daemon=True)

    def start(self) -> None:
        """Open the submitter in the writer thread; raise what opening it raised."""
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed

    async def submit(self, lines: Sequence[ReadLine]) -> Outcomes:
        return await self._enqueue(lines, ())

    async def refuse(self, refused: Sequence[Refused]) -> Outcomes:
        return await self._enqueue((), refused)

    async def _enqueue(self, lines: Sequence[ReadLine], refused: Sequence[Refused]) -> Outcomes:
        if not lines and not refused:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcomes] = loop.create_future()
        self._queue.put(_Job(lines, refused, future, loop))
        return await future

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        try:
            submitter = self._open()
        except BaseException as error:
            self._failed = error
            self._ready.set()
            return
        self._ready.set()
        try:
            while (group := self._take()) is not None:
                self._on_group(sum(job.size for job in group))
                self._submit([job for job in group if job.lines], submitter)
                self._refuse([job for job in group if job.refused], submitter)
        finally:
            submitter.close()

    def _take(self) -> list[_Job] | None:
        """The next group: one job (waiting for it), then whatever else is queued."""
        first = self._queue.get()
        if first is None:
            return None
        group, size = [first], first.size
        while size < self.max_group:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this group
                break
            group.append(job)
            size += job.size
        return group

    def _submit(self, jobs: list[_Job], submitter: Submitter) -> None:
        if not jobs:
            return
        lines = [line for job in jobs for line in job.lines]
        pending = iter(jobs)
        job = next(pending)
        try:
            # The cyclic collector paused for the whole group, not only inside each of the
            # ledger's batches: between them it would traverse every outcome the group holds
            # so far (2 to 4 µs an event in groups of 5,000). A group is bounded (max_group),
            # and the collector runs again as it ends.
            with collector_paused():
                for outcome in submitter.submit_many(lines):
                    while len(job.outcomes) == len(job.lines):
                        job = next(pending)
                    job.outcomes.append(outcome)
                    if len(job.outcomes) == len(job.lines):
                        job.finish()
        except Exception as error:
            log.exception("submitting a group of %s failed", len(lines))
            unanswered = [j for j in jobs if len(j.outcomes) < len(j.lines)]
            if len(unanswered) > 1 and not isinstance(error, SHARED_FAILURES):
                self._submit_alone(unanswered, submitter)  # one request's must not fail others
            else:
                for each in unanswered:
                    each.finish(error)

    @staticmethod
    def _submit_alone(jobs: list[_Job], submitter: Submitter) -> None:
        """What each of ``jobs`` has not been answered, in a group of its own (a retry of what
        their group stored is a duplicate); at a failure every request meets alike, the rest
        are told at once."""
        for index, job in enumerate(jobs):
            try:
                with collector_paused():
                    job.outcomes.extend(submitter.submit_many(job.lines[len(job.outcomes) :]))
            except Exception as error:
                log.exception("submitting a request of %s failed", len(job.lines))
                if isinstance(error, SHARED_FAILURES):
                    for each in jobs[index:]:
                        each.finish(error)
                    return
                job.finish(error)
                continue
            job.finish()

    def _refuse(self, jobs: list[_Job], submitter: Submitter) -> None:
        if not jobs:
            return
        refused = [one for job in jobs for one in job.refused]
        try:
            outcomes = submitter.refuse(refused)
        except Exception as error:
            log.exception("recording %s refusals failed", len(refused))
            for job in jobs:
                job.finish(error)
            return
        start = 0
        for job in jobs:
            job.outcomes = outcomes[start : start + len(job.refused)]
            start += len(job.refused)
            job.finish()
