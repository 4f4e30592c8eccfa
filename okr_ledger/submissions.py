"""Reading NDJSON submissions and summing up their outcomes."""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from events.ledger import Line
from events.outcomes import Accepted, Duplicate, Outcome


def ndjson_lines(stream: IO[bytes], on_bytes: Any = None) -> Iterator[Line]:
    """Each non-blank line with its 1-based number. ``on_bytes(n)`` is told what was read."""
    for number, line in enumerate(stream, start=1):
        if on_bytes is not None:
            on_bytes(len(line))
        stripped = line.strip()
        if stripped:
            yield stripped, number


@dataclass
class Summary:
    """Counts of outcomes: accepted + duplicate + rejected = submitted."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    orgs: set[str] = field(default_factory=set)

    @property
    def submitted(self) -> int:
        return self.accepted + self.duplicate + self.rejected

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, Accepted):
            self.count("accepted", outcome.event.org_id)
        elif isinstance(outcome, Duplicate):
            self.count("duplicate")
        else:
            self.count("rejected", reason=outcome.reason.value)

    def count(self, status: str, org_id: str | None = None, reason: str | None = None) -> None:
        """Count one outcome given by its fields (as read from the Kafka outcomes topic)."""
        if status == "accepted":
            self.accepted += 1
            if org_id is not None:
                self.orgs.add(org_id)
        elif status == "duplicate":
            self.duplicate += 1
        else:
            self.rejected += 1
            self.by_reason[reason or "unknown"] += 1

    def add_all(self, outcomes: Iterable[Outcome]) -> "Summary":
        for outcome in outcomes:
            self.add(outcome)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.by_reason.items())),
        }
