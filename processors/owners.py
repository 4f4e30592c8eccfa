"""Owners of objectives and key results: who is accountable, as an actor id.

An owner is named when the objective or key result is made (``owner`` of ``ObjectiveCreated``
and ``KeyResultDefined``) and changed by ``ObjectiveOwnerChanged`` / ``KeyResultOwnerChanged``.
Each of these emits a version row of ``owner_versions`` (``owner`` null: nobody). Owners change
no number, so the projector keeps nothing of them in its state: the rows are a function of the
event alone.
"""

from collections.abc import Callable, Mapping
from typing import Any

from processors import tables as t
from processors.batch import Batch
from processors.state import OrgProjection

Data = dict[str, Any]
Record = Mapping[str, Any]
Handler = Callable[[Batch, OrgProjection, Record, Data], None]

OBJECTIVE, KEY_RESULT = "objective", "key_result"


def _owner_row(batch: Batch, org: OrgProjection, kind: str, subject: str, data: Data) -> None:
    batch.rows[t.OWNERS].append(
        (org.org_id, kind, subject, *batch.stamp, batch.occurred, data.get("owner"),
         data.get("reason"))
    )  # fmt: skip


def objective_owner_changed(batch: Batch, org: OrgProjection, record: Record, data: Data) -> None:
    _owner_row(batch, org, OBJECTIVE, data["objective_id"], data)


def key_result_owner_changed(batch: Batch, org: OrgProjection, record: Record, data: Data) -> None:
    _owner_row(batch, org, KEY_RESULT, data["key_result_id"], data)


def named_at_creation(kind: str, field: str, handler: Handler) -> Handler:
    """``handler``, then the owner's first version if the event names one."""

    def handle(batch: Batch, org: OrgProjection, record: Record, data: Data) -> None:
        handler(batch, org, record, data)
        if data.get("owner") is not None:
            _owner_row(batch, org, kind, data[field], {"owner": data["owner"]})

    return handle


def handlers(others: Mapping[str, Handler]) -> dict[str, Handler]:
    """The owner handlers, and ``others``' creation handlers wrapped to record a first owner."""
    return {
        "ObjectiveCreated": named_at_creation(
            OBJECTIVE, "objective_id", others["ObjectiveCreated"]
        ),
        "KeyResultDefined": named_at_creation(
            KEY_RESULT, "key_result_id", others["KeyResultDefined"]
        ),
        "ObjectiveOwnerChanged": objective_owner_changed,
        "KeyResultOwnerChanged": key_result_owner_changed,
    }
