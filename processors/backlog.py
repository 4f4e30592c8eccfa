"""What the store lacks of the log, read before a catch-up (and nothing else imported).

A command that finds nothing new (:attr:`Backlog.nothing_new`) answers without importing the
projector or opening its saved state.
"""

from dataclasses import dataclass, field
from typing import Protocol

from events.log import EventLog
from processors import tables as t


class Checkpoints(Protocol):
    def checkpoints(self) -> dict[str, dict[str, int]]:
        """Every stream's positions, in one read."""
        ...


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the store lacks of the log: read once, before a catch-up."""

    done: dict[str, int]
    """Each org's checkpoint."""
    heads: dict[str, int]
    """Each org's last sequence in the ledger."""
    rejections: dict[str, int]
    """The rejection log's checkpoint of each lane (:meth:`events.log.EventLog.rejection_lanes`)."""
    checkpoints: dict[str, dict[str, int]] = field(default_factory=dict)
    """Every stream's positions, as read (:meth:`Checkpoints.checkpoints`)."""

    @property
    def behind(self) -> list[str]:
        return [org for org, head in self.heads.items() if head > self.done.get(org, 0)]

    @property
    def events(self) -> int:
        return sum(self.heads[org] - self.done.get(org, 0) for org in self.behind)


def read_backlog(log: EventLog, sink: Checkpoints) -> Backlog:
    """The store's checkpoints (one read) and the log's chain heads."""
    checkpoints = sink.checkpoints()
    return Backlog(
        checkpoints.get(t.LEDGER_STREAM, {}),
        {org: head.sequence for org, head in log.heads().items()},
        checkpoints.get(t.REJECTION_STREAM, {}),
        checkpoints,
    )


def nothing_new(log: EventLog, backlog: Backlog) -> bool:
    """Whether the log has no event and no rejection beyond the store's checkpoints."""
    return not backlog.behind and not any(
        log.rejections_after(backlog.rejections.get(lane, 0), 1, lane=lane)
        for lane in log.rejection_lanes()
    )
