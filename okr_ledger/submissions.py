"""Reading NDJSON submissions and summing up their outcomes."""

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, overload

from events.ledger import Line, ReadLine
from events.outcomes import RAW_LIMIT, Accepted, Duplicate, Outcome, Oversized

OnBytes = Callable[[int], object] | None


@overload
def ndjson_lines(stream: IO[bytes], on_bytes: OnBytes = None) -> Iterator[Line]: ...


@overload
def ndjson_lines(
    stream: IO[bytes], on_bytes: OnBytes = None, *, limit: int
) -> Iterator[ReadLine]: ...


def ndjson_lines(
    stream: IO[bytes], on_bytes: OnBytes = None, *, limit: int | None = None
) -> Iterator[ReadLine]:
    """Each non-blank line, white space stripped, with its 1-based number. ``on_bytes(n)`` is
    told what was read.

    With ``limit``, no line is held whole if it is longer than ``limit`` bytes: it is read in
    pieces and comes as :class:`Oversized` (its first bytes, its length and SHA-256), so a
    line of any size costs the memory of one piece.
    """
    if limit is None:
        for number, line in enumerate(stream, start=1):
            if on_bytes is not None:
                on_bytes(len(line))
            if stripped := line.strip():
                yield stripped, number
        return
    piece_size = max(2 * limit, 1 << 20)
    number = 0
    while piece := stream.readline(piece_size):
        number += 1
        if on_bytes is not None:
            on_bytes(len(piece))
        if piece.endswith(b"\n") or len(piece) < piece_size:  # the whole line is in hand
            whole = piece.strip()
            if len(whole) > limit:
                yield (
                    Oversized(whole[:RAW_LIMIT], len(whole), hashlib.sha256(whole).hexdigest()),
                    number,
                )
            elif whole:
                yield whole, number
            continue
        long_line = _LongLine(keep=max(limit, RAW_LIMIT))
        long_line.add(piece)
        while not piece.endswith(b"\n") and (piece := stream.readline(piece_size)):
            if on_bytes is not None:
                on_bytes(len(piece))
            long_line.add(piece)
        if item := long_line.result(limit):
            yield item, number


class _LongLine:
    """A line read in pieces: its first ``keep`` bytes, its length and SHA-256, white space
    stripped at both ends without holding it (the hash is copied after each piece's last
    byte that is not white space, so trailing white space of any length is left out)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept = bytearray()
        self.hash = hashlib.sha256()
        self.length = 0
        self.content: tuple[int, Any] = (0, self.hash.copy())
        """Length and hash up to the last byte that is not white space."""

    def add(self, piece: bytes) -> None:
        if not self.length:
            piece = piece.lstrip()
        if len(self.kept) < self.keep:
            self.kept += piece[: self.keep - len(self.kept)]
        text = len(piece.rstrip())
        if text:
            self.hash.update(piece[:text])
            self.content = (self.length + text, self.hash.copy())
        self.hash.update(piece[text:])
        self.length += len(piece)

    def result(self, limit: int) -> bytes | Oversized | None:
        length, hashed = self.content
        if length == 0:
            return None
        if length <= limit:
            return bytes(self.kept[:length])
        return Oversized(bytes(self.kept[: min(RAW_LIMIT, length)]), length, hashed.hexdigest())


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
            self.count("accepted", outcome.org_id)
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
