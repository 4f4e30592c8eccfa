"""What the worker's agents report, for the operators' metrics.

The agents call a :class:`WorkerMetrics`; the process that runs them decides where the figures
go (Prometheus, see ``okr_ledger.worker_runtime``). :class:`NoMetrics` counts nothing.
"""

from collections.abc import Mapping
from typing import Protocol


class WorkerMetrics(Protocol):
    def sequenced(
        self,
        partition: int,
        *,
        events: int,
        rejections: Mapping[str, int],
        duplicates: int,
        outcomes: int,
        seconds: float,
    ) -> None:
        """A batch of intake ``partition`` written: its events, rejections by reason code,
        duplicates, outcomes sent, and how long deciding and writing it took."""
        ...

    def projected(self, *, events: int, rejections: int, seconds: float) -> None:
        """A batch of ledger records and rejections stored in the projections."""
        ...

    def projector_lag(self, partition: int, *, events: int, seconds: float) -> None:
        """Ledger ``partition``: records not projected yet, and the age of the newest one
        projected."""
        ...

    def assigned(self, topic: str, partitions: int) -> None:
        """How many partitions of ``topic`` this worker owns now."""
        ...

    def rebalanced(self) -> None:
        """The group started a rebalance."""
        ...

    def restored(self, partition: int, *, seconds: float, events: int) -> None:
        """Intake ``partition`` taken over: its state restored, ``events`` folded from the
        ledger."""
        ...

    def fenced(self, partition: int) -> None:
        """A write of ``partition`` was refused: another worker owns it now."""
        ...


class NoMetrics:
    """Counts nothing."""

    def sequenced(
        self,
        partition: int,
        *,
        events: int,
        rejections: Mapping[str, int],
        duplicates: int,
        outcomes: int,
        seconds: float,
    ) -> None:
        pass

    def projected(self, *, events: int, rejections: int, seconds: float) -> None:
        pass

    def projector_lag(self, partition: int, *, events: int, seconds: float) -> None:
        pass

    def assigned(self, topic: str, partitions: int) -> None:
        pass

    def rebalanced(self) -> None:
        pass

    def restored(self, partition: int, *, seconds: float, events: int) -> None:
        pass

    def fenced(self, partition: int) -> None:
        pass
