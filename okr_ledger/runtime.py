"""The runtime: what the application does on the ledger backend ``OKR_LEDGER_URL`` names.

Two runtimes exist: the embedded one (``sqlite://``; submissions decided in-process, each
query command catches the projections up itself) and the Kafka one (``kafka://``; a worker
decides and projects, submitters wait for its answers, queries read its store). One is chosen
once, by :func:`okr_ledger.wiring.bootstrap`; the CLI, the Python client and the HTTP server
call only this interface, never ``if kafka``.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from events.ledger import ReadLine
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome

if TYPE_CHECKING:  # the projection side is imported only by the commands that use it
    from events.intake_wire import Refusal  # the HTTP API's and Kafka's (7-9 ms of import)
    from projections.store import ProjectionStore

Advance = Callable[[int], None]
"""Report ``n`` more units of work done."""
ProgressBar = Callable[[str, int], AbstractContextManager[Advance]]
"""``bar(description, total)``: a context yielding ``advance``."""


def no_progress(_description: str, _total: int) -> AbstractContextManager[Advance]:
    """A progress bar that shows nothing."""
    from contextlib import nullcontext

    return nullcontext(lambda _n: None)


if TYPE_CHECKING:
    from okr_ledger.http.keys import KeyStore

Refused = tuple[bytes, "Refusal", int | None]
"""A submission a submitter refused before deciding it (the HTTP API's forbidden ones), with
the reason and message to record it under, and its line number in a batch."""


class Submitter(Protocol):
    """Submissions in, one outcome each out, in order."""

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[SubmitOutcome]: ...

    def refuse(self, refused: Sequence[Refused]) -> list[SubmitOutcome]:
        """Record each refused submission as a rejection (never deciding it); its outcome.
        On Kafka only the worker writes rejections: it is asked to through intake."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")


class ProjectionReader(Protocol):
    """How a long-lived process (the HTTP server) reads the projections, read after read."""

    def read(self, answer: "Callable[[ProjectionStore], T]") -> T:
        """``answer(store)`` on the projections, as up to date as the runtime makes them."""
        ...

    def close(self) -> None: ...


class ReadEachTime:
    """A :class:`ProjectionReader` that takes :meth:`Runtime.projections` for every read (a
    store a worker keeps up to date, reached over HTTP: nothing costly to keep open)."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime

    def read(self, answer: "Callable[[ProjectionStore], T]") -> T:
        with self.runtime.projections() as store:
            return answer(store)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class RebuildReport:
    """What ``rebuild`` did and found."""

    summary: str
    notes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    """Empty when the rebuild equals what was there."""
    compared: bool = True
    """False when there was nothing to compare with."""
    baseline: str = "what was there"
    """What the rebuild was compared with."""


class Runtime(Protocol):
    """The application's operations on one ledger backend."""

    name: str
    settings: Settings

    def init_ledger(self) -> str:
        """Create what the ledger needs (SQLite file or Kafka topics); rerunnable. A summary."""
        ...

    def submitter(self) -> Submitter:
        """A submitter; close it when done."""
        ...

    def projections(
        self, bar: ProgressBar = no_progress
    ) -> AbstractContextManager["ProjectionStore"]:
        """The projection store to read, as up to date as this runtime makes it."""
        ...

    def reader(self, shared: bool = False) -> ProjectionReader:
        """What a long-lived process reads the projections through; close it when done.
        ``shared``: the process is one of several of one server (``serve --workers N``)."""
        ...

    def serving(self, workers: int) -> AbstractContextManager[dict[str, str]]:
        """For the life of a server of ``workers`` processes: the environment its worker
        processes need beside the settings (each reads its settings from it)."""
        ...

    def rebuild(self, keep: bool, bar: ProgressBar = no_progress) -> RebuildReport:
        """Project the ledger again and compare with the projections there."""
        ...

    def key_store(self, follow: bool = False) -> "KeyStore":
        """The HTTP API's keys, where every server replica reads them; with ``follow``, kept
        up to date in the background (a server's)."""
        ...
