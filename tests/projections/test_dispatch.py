"""One registry of event types: every consumer handles every type, and the projector refuses a
type it does not know rather than skip it."""

import importlib

import pytest

from processors.projector import Projector, StoredEvent
from schemas import registry
from schemas.errors import IncompleteDispatchError, UnknownEventTypeError
from tests.projections.ledgers import ORG, LedgerBuilder

CONSUMERS = {
    "sequencing rules": "events.rules",
    "sequencer state": "events.state",
    "projector": "processors.projector",
}
"""Every module that dispatches on the event type, by the name it registers under."""


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_every_consumer_handles_every_event_type(consumer: str) -> None:
    importlib.import_module(CONSUMERS[consumer])
    assert set(registry.consumers()[consumer]) == set(registry.EVENT_TYPES)


def test_no_other_consumer_is_registered() -> None:
    for module in CONSUMERS.values():
        importlib.import_module(module)
    assert set(registry.consumers()) == set(CONSUMERS)


def test_a_table_without_a_type_of_the_contract_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from processors.projector import HANDLERS

    monkeypatch.setattr(registry, "EVENT_TYPES", {**registry.EVENT_TYPES, "GoalInvented": 1})
    with pytest.raises(IncompleteDispatchError, match=r"no handler for \['GoalInvented'\]"):
        registry.dispatch_table("a test", HANDLERS)


def test_a_table_with_a_type_outside_the_contract_is_refused() -> None:
    from processors.projector import HANDLERS

    with pytest.raises(IncompleteDispatchError, match=r"unknown types \['GoalInvented'\]"):
        registry.dispatch_table("a test", {**HANDLERS, "GoalInvented": HANDLERS["ThemeAdded"]})
    assert "a test" not in registry.consumers()


def test_the_projector_refuses_an_event_type_it_does_not_know(builder: LedgerBuilder) -> None:
    builder.skeleton()
    records = list(builder.log.read_records(ORG))
    unknown = {**records[-1], "sequence": len(records) + 1, "type": "GoalInvented", "data": {}}
    projector = Projector()
    projector.project([StoredEvent.from_record(r) for r in records])
    with pytest.raises(UnknownEventTypeError, match="unknown event type 'GoalInvented'"):
        projector.project([StoredEvent.from_record(unknown)])
    assert projector.state.position(ORG) == len(records)


def test_the_projector_refuses_a_version_it_does_not_know(builder: LedgerBuilder) -> None:
    builder.skeleton()
    records = list(builder.log.read_records(ORG))
    newer = {**records[-1], "sequence": len(records) + 1, "schema_version": 9}
    projector = Projector()
    projector.project([StoredEvent.from_record(r) for r in records])
    with pytest.raises(UnknownEventTypeError, match="schema_version 9"):
        projector.project([StoredEvent.from_record(newer)])
