"""The sequencer's state: a fold over the ledger, per org.

It holds what the rules need and nothing more: chain heads, which ids exist and their
lifecycle, the vertical cascade (for cycles), and, for idempotency, a digest of every known
event id and the event each source's id names. :class:`LedgerState` holds all of it in memory;
a :mod:`events.state_store` keeps it in SQLite and hands out a view of the same class that
reads what a batch needs.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from schemas.envelope import GENESIS_HASH, LedgerEvent, original_check_in_key
from schemas.registry import EVENT_TYPES, dispatch_table, upcast

Data = dict[str, Any]
_LATEST_VERSIONS = dict(EVENT_TYPES)
""":data:`EVENT_TYPES` as a plain dict (a read-only proxy's ``get`` costs a method call more)."""


@dataclass(slots=True)
class ObjectiveState:
    status: str
    period_id: str
    parent_id: str | None


@dataclass(slots=True)
class KeyResultState:
    objective_id: str
    kind: str
    start: float
    active: bool = True


@dataclass(slots=True)
class CheckInState:
    key_result_id: str
    retracted: bool = False


@dataclass(slots=True)
class OrgState:
    last_sequence: int = 0
    last_hash: str = GENESIS_HASH
    strategy_defined: bool = False
    swot: dict[str, bool] = field(default_factory=dict)  # id -> present
    competitors: set[str] = field(default_factory=set)
    themes: dict[str, bool] = field(default_factory=dict)  # id -> active
    units: dict[str, bool] = field(default_factory=dict)  # id -> active
    periods: dict[str, bool] = field(default_factory=dict)  # id -> open
    objectives: dict[str, ObjectiveState] = field(default_factory=dict)
    links: set[tuple[str, str, str]] = field(default_factory=set)
    key_results: dict[str, KeyResultState] = field(default_factory=dict)
    check_ins: dict[bytes, CheckInState] = field(default_factory=dict)  # event uuid bytes

    def ancestors(self, objective_id: str) -> Iterable[str]:
        """Parent, grandparent... of an objective (stops on a cycle, which rules prevent)."""
        seen: set[str] = set()
        current = self.objectives.get(objective_id)
        while current is not None and current.parent_id is not None:
            if current.parent_id in seen:
                return
            seen.add(current.parent_id)
            yield current.parent_id
            current = self.objectives.get(current.parent_id)


@dataclass(slots=True)
class LedgerState:
    """Everything the sequencer knows, for every org it has seen."""

    orgs: dict[str, OrgState] = field(default_factory=dict)
    known: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    """(org, event uuid bytes) -> content digest; how duplicates and conflicts are told apart.
    The content is the normalised envelope without its ``event_id``."""
    sources: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    """(org, source, source_event_id) -> uuid bytes of the first event that carried it: how a
    source's retry under a new ``event_id`` is found."""
    submitted_digests: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    """(org, event uuid bytes) -> the digest of the exact bytes the event was accepted from,
    for the events this state keeps it for (see :meth:`submitted`): none in this class."""

    def org(self, org_id: str) -> OrgState:
        state = self.orgs.get(org_id)
        if state is None:
            state = self.orgs[org_id] = OrgState()
        return state

    def submitted(self, org_id: str, event_key: bytes) -> bytes | None:
        """The digest of the exact bytes that event ``event_key`` was accepted from, when this
        state keeps it (see :func:`events.sequencer.submission_digest`); this one keeps none."""
        return self.submitted_digests.get((org_id, event_key))

    def apply(self, event: LedgerEvent, digest: bytes) -> None:
        """Fold one accepted event (and its content digest) into the state."""
        self.apply_record(vars(event), UUID(event.event_id).bytes, digest)

    def apply_record(
        self,
        record: Mapping[str, Any],
        event_key: bytes,
        digest: bytes,
        submitted: bytes | None = None,
    ) -> None:
        """:meth:`apply` on the event's fields, its id's 16 bytes and, when known, the digest of
        the bytes it was submitted as (kept by the states that keep it)."""
        org_id = record["org_id"]
        org = _dict_get(self.orgs, org_id) or self.org(org_id)  # in hand: the decision read it
        org.last_sequence = record["sequence"]
        org.last_hash = record["hash"]
        self.known[(org_id, event_key)] = digest
        source_event_id = record["source_event_id"]
        if source_event_id is not None:  # the first keeps it (ledgers from before the rule)
            self.sources.setdefault((org_id, record["source"], source_event_id), event_key)
        type_name, data = record["type"], record["data"]
        if record["schema_version"] != _LATEST_VERSIONS.get(type_name):
            data = upcast(type_name, record["schema_version"], data)
        handler = _HANDLERS.get(type_name)
        if handler is not None:
            if type_name == "CheckInRetracted":
                data = {**data, "retracts_event_id": str(
                    UUID(bytes=original_check_in_key(org_id, record["source"], data))
                )}  # fmt: skip
            handler(org, data, event_key)


def _strategy_defined(org: OrgState, data: Data, key: bytes) -> None:
    org.strategy_defined = True


def _swot_added(org: OrgState, data: Data, key: bytes) -> None:
    org.swot[data["swot_id"]] = True


def _swot_removed(org: OrgState, data: Data, key: bytes) -> None:
    org.swot[data["swot_id"]] = False


def _competitor(org: OrgState, data: Data, key: bytes) -> None:
    org.competitors.add(data["competitor_id"])


def _theme_added(org: OrgState, data: Data, key: bytes) -> None:
    org.themes[data["theme_id"]] = True


def _theme_retired(org: OrgState, data: Data, key: bytes) -> None:
    org.themes[data["theme_id"]] = False


def _unit_added(org: OrgState, data: Data, key: bytes) -> None:
    org.units[data["unit_id"]] = True


def _unit_retired(org: OrgState, data: Data, key: bytes) -> None:
    org.units[data["unit_id"]] = False


def _period_defined(org: OrgState, data: Data, key: bytes) -> None:
    org.periods[data["period_id"]] = True


def _period_closed(org: OrgState, data: Data, key: bytes) -> None:
    org.periods[data["period_id"]] = False


def _period_reopened(org: OrgState, data: Data, key: bytes) -> None:
    org.periods[data["period_id"]] = True


def _objective_created(org: OrgState, data: Data, key: bytes) -> None:
    org.objectives[data["objective_id"]] = ObjectiveState(
        "active", data["period_id"], data.get("parent_objective_id")
    )


def _objective_aligned(org: OrgState, data: Data, key: bytes) -> None:
    org.objectives[data["objective_id"]].parent_id = data["parent_objective_id"]


def _objective_linked(org: OrgState, data: Data, key: bytes) -> None:
    org.links.add((data["objective_id"], data["linked_objective_id"], data["relation"]))


def _objective_unlinked(org: OrgState, data: Data, key: bytes) -> None:
    org.links.discard((data["objective_id"], data["linked_objective_id"], data["relation"]))


def _objective_status(org: OrgState, data: Data, key: bytes) -> None:
    org.objectives[data["objective_id"]].status = data["status"]


def _key_result_defined(org: OrgState, data: Data, key: bytes) -> None:
    org.key_results[data["key_result_id"]] = KeyResultState(
        data["objective_id"], data["kind"], float(data["start"])
    )


def _key_result_retired(org: OrgState, data: Data, key: bytes) -> None:
    org.key_results[data["key_result_id"]].active = False


def _check_in_recorded(org: OrgState, data: Data, key: bytes) -> None:
    org.check_ins[key] = CheckInState(data["key_result_id"])


def _check_in_retracted(org: OrgState, data: Data, key: bytes) -> None:
    org.check_ins[UUID(data["retracts_event_id"]).bytes].retracted = True


def _unchanged(org: OrgState, data: Data, key: bytes) -> None:
    """The event changes nothing the rules look at (beyond the chain and the known ids)."""


_FOLDS: dict[str, Callable[[OrgState, Data, bytes], None]] = {
    "StrategyDefined": _strategy_defined,
    "StrategyRevised": _unchanged,
    "StrategyReviewed": _unchanged,
    "SwotItemAdded": _swot_added,
    "SwotItemRemoved": _swot_removed,
    "CompetitorNoted": _competitor,
    "ThemeAdded": _theme_added,
    "ThemeRevised": _unchanged,
    "ThemeRetired": _theme_retired,
    "OrgUnitAdded": _unit_added,
    "OrgUnitRetired": _unit_retired,
    "PeriodDefined": _period_defined,
    "PeriodClosed": _period_closed,
    "PeriodReopened": _period_reopened,
    "ObjectiveCreated": _objective_created,
    "ObjectiveRevised": _unchanged,
    "ObjectiveAligned": _objective_aligned,
    "ObjectiveLinked": _objective_linked,
    "ObjectiveUnlinked": _objective_unlinked,
    "ObjectiveStatusChanged": _objective_status,
    "KeyResultDefined": _key_result_defined,
    "KeyResultTargetRevised": _unchanged,
    "KeyResultRetired": _key_result_retired,
    "CheckInRecorded": _check_in_recorded,
    "CheckInCorrected": _unchanged,
    "CheckInRetracted": _check_in_retracted,
    "ObjectiveOwnerChanged": _unchanged,
    "KeyResultOwnerChanged": _unchanged,
}
_APPLY = dispatch_table("sequencer state", _FOLDS)
_HANDLERS = dict(_APPLY)
"""``_APPLY`` as a plain dict (a read-only proxy's ``get`` costs a method call more)."""
_dict_get = dict.get
