"""The embedded runtime: the SQLite ledger in this process, projections caught up on demand."""

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import orjson

from events.ledger import Ledger, ReadLine
from events.log import EventLog
from okr_ledger.child_process import child_error, settings_json
from okr_ledger.runtime import ProgressBar, RebuildReport, Refused, no_progress
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from okr_ledger.wiring import open_event_log, open_ledger, open_projection_store
from schemas.envelope import format_timestamp
from schemas.errors import ProjectionError

if TYPE_CHECKING:  # imported by the commands that need them, not by ``submit``
    from okr_ledger.http.key_stores import SqliteKeyStore
    from okr_ledger.kept_projections import KeptProjections
    from processors.backlog import Backlog
    from processors.runner import EmbeddedRunner
    from projections.store import ProjectionStore


class LedgerSubmitter:
    """Submits to the ledger in this process: each outcome as soon as its batch is stored."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[SubmitOutcome]:
        from_outcome = SubmitOutcome.from_outcome
        for outcomes in self.ledger.submit_batches(lines):
            yield from map(from_outcome, outcomes)

    def refuse(self, refused_: Sequence[Refused]) -> list[SubmitOutcome]:
        """Append the refusals to the rejection log, in one transaction."""
        from events.intake_wire import refused  # the HTTP API's alone: not for ``submit``

        now = format_timestamp(self.ledger.clock())
        limit = self.ledger.policy.max_bytes
        rejections = [refused(raw, refusal, now, line, limit) for raw, refusal, line in refused_]
        self.ledger.log.append([], rejections)
        return [SubmitOutcome.from_outcome(rejection) for rejection in rejections]

    def close(self) -> None:
        self.ledger.log.close()


def catch_up(
    store: "ProjectionStore",
    log: EventLog,
    settings: Settings,
    bar: ProgressBar,
    label: str,
    *,
    runner: "EmbeddedRunner | None" = None,
    backlog: "Backlog | None" = None,
) -> int:
    """Project what the ledger has beyond the store's checkpoints; the events projected.

    With nothing new (the usual case of a query), neither the projector nor its saved state
    is loaded: the check is one read of the store's checkpoints, one of the ledger's heads and
    one of its rejections (:mod:`processors.backlog`). ``runner``: a projector kept by the
    caller across catch-ups (:func:`projecting`), whose state is already loaded; ``backlog``:
    what the store lacks, read already (the kept reader's, from the checkpoints it knows).
    """
    store.set_setting("over_focus_limit", str(settings.over_focus_limit))
    from processors.backlog import nothing_new, read_backlog

    if backlog is None:
        backlog = read_backlog(log, store)
    if nothing_new(log, backlog):
        with bar(label, 0):
            return 0
    with ExitStack() as stack:
        if runner is None:
            runner = stack.enter_context(projecting(store, log, settings))
        with bar(label, backlog.events) as advance:
            return runner.catch_up(advance, backlog).events


@contextmanager
def projecting(
    store: "ProjectionStore", log: EventLog, settings: Settings
) -> Iterator["EmbeddedRunner"]:
    """The projector over ``log`` and ``store``, with its saved state in the data directory
    (``projector-state.sqlite``), loaded as it needs it."""
    from processors.projector import Projector
    from processors.runner import EmbeddedRunner
    from processors.snapshots import FILE_NAME, SqliteSnapshots

    snapshots = SqliteSnapshots(settings.data_dir / FILE_NAME)
    try:
        yield EmbeddedRunner(
            log,
            store,
            Projector(),
            snapshots=snapshots,
            commit_bytes=settings.projector_commit_bytes,
        )
    finally:
        snapshots.close()


class EmbeddedRuntime:
    """``sqlite://``: see the module docstring."""

    name = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def init_ledger(self) -> str:
        open_event_log(self.settings, create=True).close()
        return f"ledger: {self.settings.resolved_ledger_url}"

    def submitter(self) -> LedgerSubmitter:
        return LedgerSubmitter(open_ledger(self.settings))

    @contextmanager
    def projections(self, bar: ProgressBar = no_progress) -> Iterator["ProjectionStore"]:
        """The store, caught up with the ledger first (no ledger: an error, and no store)."""
        log = open_event_log(self.settings, create=False, read_only=True)
        try:
            store = open_projection_store(self.settings)
        except BaseException:
            log.close()
            raise
        try:
            try:
                catch_up(store, log, self.settings, bar, "projecting")
            finally:
                log.close()
            yield store
        finally:
            store.close()

    def reader(self, shared: bool = False) -> "KeptProjections":
        """The store kept open between reads, closed after ``OKR_HTTP_STORE_IDLE_SECONDS``
        without one; ``shared``: the server's worker processes take turns at it, each closing
        it after its read (:mod:`okr_ledger.kept_projections`)."""
        import os
        from pathlib import Path

        from okr_ledger.kept_projections import KeptProjections
        from okr_ledger.store_host import STORE_URL_FILE, PublishedStore

        published = os.environ.get(STORE_URL_FILE) if shared else None
        return KeptProjections(
            self.settings,
            self.settings.http_store_idle_seconds,
            shared=shared,
            host=None if published is None else PublishedStore(self.settings, Path(published)),
        )

    @contextmanager
    def serving(self, workers: int) -> Iterator[dict[str, str]]:
        """With several processes, one child process holds an embedded store for the server's
        life and serves it to them all (:mod:`okr_ledger.store_host`): opened and closed at
        each of their reads, chDB would leave threads behind in each."""
        if workers < 2:
            yield {}
            return
        from okr_ledger.store_host import hosted

        with hosted(self.settings) as environment:
            yield environment

    def rebuild(self, keep: bool = False, bar: ProgressBar = no_progress) -> RebuildReport:
        """Drop the projections and rebuild them in place (``keep`` has nothing to keep)."""
        return rebuild_in_place(self.settings, bar)

    def key_store(self, follow: bool = False) -> "SqliteKeyStore":
        """``<data dir>/keys.db``; every lookup reads it, so there is nothing to follow."""
        from okr_ledger.http.key_stores import KEYS_FILE, SqliteKeyStore

        return SqliteKeyStore(self.settings.data_dir / KEYS_FILE)


def release_memory(store: "ProjectionStore") -> None:
    """After a large catch-up or a fingerprint: collect the projector's state, and hand what
    Python freed (kept by the C library's allocator, which chDB's own cannot reuse) and what
    chDB freed back to the kernel, before the next stage allocates its own (``rebuild``'s peak
    RSS)."""
    from projections.client import trim_c_allocator

    gc.collect()
    trim_c_allocator()
    store.release_memory()


def rebuild_in_place(settings: Settings, bar: ProgressBar) -> RebuildReport:
    """Catch up and fingerprint (with chDB in a process of its own: :func:`fingerprint_apart`),
    drop, rebuild from the whole ledger, compare."""
    from okr_ledger.projection_compare import differing, fingerprint, naming_the_store

    before = fingerprint_apart(settings, bar)  # and the projections dropped
    store = open_projection_store(settings)  # created anew
    try:
        log = open_event_log(settings, create=False, read_only=True)
        try:
            events = catch_up(store, log, settings, bar, "rebuilding")
            release_memory(store)
            with naming_the_store({"the rebuilt projections": store}):
                after = fingerprint(store)
        finally:
            log.close()
    finally:
        store.close()
    report = RebuildReport(f"rebuilt the projections from {events} ledger events")
    if before is None:
        report.compared = False
        report.notes.append(
            "the projections before were damaged (tables missing: a drop cut short): "
            "nothing to compare"
        )
    elif not any(count for count, _digest in before.values()):
        report.compared = False
        report.notes.append("there were no projections before: nothing to compare")
    else:
        report.differences = [f"table {table}" for table in differing(before, after)]
    return report


def caught_up_fingerprint(
    settings: Settings, bar: ProgressBar = no_progress
) -> "dict[str, tuple[int, int]] | None":
    """The store caught up with the ledger, then its fingerprint (what ``rebuild`` compares
    the rebuilt projections with), then every projection dropped. None (nothing caught up or
    compared) when tables are missing (:meth:`ProjectionStore.missing_tables`): what is
    left is dropped."""
    from okr_ledger.projection_compare import fingerprint

    store = open_projection_store(settings)
    try:
        found = None
        if not store.missing_tables():
            log = open_event_log(settings, create=False, read_only=True)
            try:
                catch_up(store, log, settings, bar, "projecting")
            finally:
                log.close()
            found = fingerprint(store)
        store.drop_all(sync=True)  # not left for the next process to load (the rebuild's)
        return found
    finally:
        store.close()


def fingerprint_apart(
    settings: Settings, bar: ProgressBar = no_progress
) -> "dict[str, tuple[int, int]] | None":
    """:func:`caught_up_fingerprint` (which drops the projections), with chDB in a process of
    its own (``python -m okr_ledger.embedded_runtime``, which this one waits for): what chDB
    keeps of that work (the code pages its queries touched, ~16 MiB; what its allocator and
    glibc's keep of their memory, ~10-20 MiB; the old tables, which an Atomic database keeps
    in memory for 8 minutes after they are dropped) leaves with it instead of adding to the
    rebuild's catch-up, the peak of ``rebuild`` (issue 9). This process has not loaded chDB
    by then: the two hold the child's peak and ~45 MiB of imports. On a store caught up
    before (the usual case) the child only fingerprints (~342 MiB at 1,000,000 events), well
    below the catch-up that follows; on a store far behind, its catch-up and those 45 MiB
    together can exceed a catch-up alone. A catch-up there has no progress bar. With a
    server, in this process (its memory is the server's)."""
    from projections.client import parse_url

    if not parse_url(settings.resolved_clickhouse_url).embedded:
        return caught_up_fingerprint(settings, bar)
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-P", "-m", _MODULE],  # -P: this installation's, whatever the cwd
        input=settings_json(settings),
        capture_output=True,
        check=False,
    )
    try:
        answer = orjson.loads(child.stdout)
        if "error" in answer:
            failure = child_error(*answer["error"])
        else:
            kept = answer["fingerprint"]
            found = (
                None if kept is None else {str(t): (int(c), int(d)) for t, (c, d) in kept.items()}
            )
    except Exception as error:  # killed (out of memory), or it could not start
        said = child.stderr.decode(errors="replace").strip().splitlines()
        ended = (
            f"killed by signal {-child.returncode}"
            + (" (the kernel's out-of-memory killer sends it)" if child.returncode == -9 else "")
            if child.returncode < 0
            else f"exit {child.returncode}"
        )
        raise ProjectionError(
            f"the fingerprint of the projections before the rebuild failed ({ended}): "
            f"{said[-1] if said else error}"
        ) from None
    if "error" in answer:
        raise failure
    return found


_MODULE = "okr_ledger.embedded_runtime"


def _fingerprint_here() -> None:
    """The process of :func:`fingerprint_apart`: the settings (JSON) on stdin; on stdout
    ``{"fingerprint": ...}``, or ``{"error": [type, message]}`` (an error of
    :mod:`schemas.errors` is raised again as such by the parent, any other as
    :class:`ProjectionError`)."""
    import os
    import sys

    settings = Settings.model_validate(orjson.loads(sys.stdin.buffer.read()))  # env unread
    answers = os.fdopen(os.dup(1), "wb")  # what the engine might print goes to stderr instead
    os.dup2(2, 1)
    try:
        answer: dict[str, object] = {"fingerprint": caught_up_fingerprint(settings)}
    except Exception as error:
        answer = {"error": [type(error).__name__, str(error)]}
    with answers:
        answers.write(orjson.dumps(answer))


if __name__ == "__main__":
    _fingerprint_here()
