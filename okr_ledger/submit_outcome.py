"""One submission's outcome as ``submit``, the client and the HTTP API report it, from either
runtime."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from events.outcomes import Accepted, Duplicate, Outcome, Oversized, Rejection

if TYPE_CHECKING:  # the Kafka wire format: imported by the Kafka runtime only
    from events.intake_wire import Answer

Status = Literal["accepted", "duplicate", "rejected"]


@dataclass(slots=True, unsafe_hash=True)
class SubmitOutcome:
    """Accepted (with its sequence and hash), duplicate, or rejected (with a reason code).

    Never changed once made, but not a frozen dataclass: one is made per submission, and
    freezing its nine fields costs more than a microsecond of ``object.__setattr__`` each time
    (hashable all the same, by its fields).
    """

    status: Status
    event_id: str | None
    org_id: str | None
    sequence: int | None = None
    hash: str | None = None
    reason_code: str | None = None
    message: str | None = None
    line: int | None = None
    _document: Callable[[], dict[str, Any]] = field(default=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Accepted or duplicate: the event is in the ledger."""
        return self.status != "rejected"

    def to_json(self) -> dict[str, Any]:
        """The outcome's JSON exactly as the embedded ledger reports it (``--outcomes``);
        built only when asked for."""
        return self._document()

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> "SubmitOutcome":
        # Positional arguments: one of these is made per submission (a rerun's only other cost).
        if type(outcome) is Duplicate:
            return cls(
                "duplicate", outcome.event_id, outcome.org_id, None, None, None, None, None,
                outcome.to_json,
            )  # fmt: skip
        if isinstance(outcome, Accepted):
            e = outcome.record  # the event's fields, without building its model
            return cls(
                "accepted", e["event_id"], e["org_id"], e["sequence"], e["hash"], None, None,
                None, outcome.to_json,
            )  # fmt: skip
        if isinstance(outcome, Duplicate):
            return cls("duplicate", outcome.event_id, outcome.org_id, _document=outcome.to_json)
        return cls(
            "rejected",
            outcome.event_id,
            outcome.org_id,
            reason_code=outcome.reason.value,
            message=outcome.message,
            line=outcome.line,
            _document=outcome.to_json,
        )

    @classmethod
    def from_kafka(
        cls, answer: "Answer", raw: bytes | Oversized, line: int | None
    ) -> "SubmitOutcome":
        """From a record of the outcomes topic, and the submitted bytes and line number."""
        from events.intake_wire import AcceptedAnswer, DuplicateAnswer

        if isinstance(answer, AcceptedAnswer):
            document = answer.model_dump(
                include={"status", "event_id", "org_id", "sequence", "hash"}
            )
            return cls(
                "accepted",
                answer.event_id,
                answer.org_id,
                answer.sequence,
                answer.hash,
                _document=lambda: dict(document),
            )
        if isinstance(answer, DuplicateAnswer):
            document = answer.model_dump(include={"status", "event_id", "org_id"})
            return cls(
                "duplicate", answer.event_id, answer.org_id, _document=lambda: dict(document)
            )
        whole = raw if isinstance(raw, Oversized) else None
        rejection = Rejection(
            reason=answer.reason_code,
            message=answer.message,
            raw=raw.prefix if isinstance(raw, Oversized) else raw,
            recorded_at=answer.recorded_at,
            details=[detail.model_dump() for detail in answer.details],
            org_id=answer.org_id,
            event_id=answer.event_id,
            type=answer.type,
            source=answer.source,
            line=line,
            raw_length=whole.length if whole else None,
            raw_sha256=whole.sha256 if whole else None,
        )
        return cls.from_outcome(rejection)
