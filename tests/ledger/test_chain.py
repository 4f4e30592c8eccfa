"""The hash chain: what an event's hash covers, and how verification names the first bad event."""

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.canonical import canonical_bytes
from events.chain import event_hash, verify_chain
from events.outcomes import Accepted
from events.sequencer import Sequencer
from schemas.envelope import GENESIS_HASH
from tests.builders import NOW, chained_events
from tests.ledger.strategies import Mix, mixes
from tests.ledger.support import ALTERATIONS, altered, by_org


def records(*orgs: str, check_ins: int = 3) -> list[dict[str, Any]]:
    return [e.to_record() for e in chained_events(*orgs, check_in_count=check_ins)]


def test_the_hash_is_sha256_of_prev_hash_then_the_canonical_event_without_hash() -> None:
    record = records("acme")[1]
    body = {k: v for k, v in record.items() if k != "hash"}
    expected = hashlib.sha256(record["prev_hash"].encode("ascii") + canonical_bytes(body))
    assert event_hash(record) == record["hash"] == expected.hexdigest()


def test_the_hash_ignores_the_hash_field_and_covers_every_other_field() -> None:
    record = records("acme")[0]
    assert event_hash({**record, "hash": "whatever"}) == record["hash"]
    for key in record:
        if key not in ("hash", "prev_hash"):
            changed = {**record, key: "changed" if record[key] != "changed" else "other"}
            assert event_hash(changed) != record["hash"], key


def test_a_ledger_built_by_the_sequencer_verifies_and_reports_its_head() -> None:
    chain = records("acme")
    report = verify_chain("acme", chain)
    assert report.ok
    assert report.events == len(chain) == 10
    assert report.first_bad_sequence is None
    assert report.head_hash == chain[-1]["hash"]
    assert chain[0]["prev_hash"] == GENESIS_HASH


def test_an_empty_chain_is_intact() -> None:
    report = verify_chain("nobody", [])
    assert (report.ok, report.events, report.head_hash) == (True, 0, GENESIS_HASH)


@pytest.mark.parametrize("how", ALTERATIONS)
@pytest.mark.parametrize("position", [0, 4, 9])
def test_an_altered_event_is_named_by_its_sequence(how: str, position: int) -> None:
    chain = records("acme")
    chain[position] = altered(chain[position], how)
    report = verify_chain("acme", chain)
    assert not report.ok
    assert report.first_bad_sequence == position + 1
    assert report.events == position
    assert report.problem


def test_a_gap_is_named_by_the_missing_sequence() -> None:
    chain = records("acme")
    del chain[3]
    report = verify_chain("acme", chain)
    assert report.first_bad_sequence == 4
    assert report.problem == "expected sequence 4, found 5"


def test_two_swapped_events_are_named_by_the_first_position() -> None:
    chain = records("acme")
    chain[5], chain[6] = chain[6], chain[5]
    assert verify_chain("acme", chain).first_bad_sequence == 6


def test_a_repeated_event_is_named_by_the_repetition() -> None:
    chain = records("acme")
    chain.insert(3, chain[2])
    assert verify_chain("acme", chain).first_bad_sequence == 4


def test_a_chain_that_does_not_start_at_genesis_is_bad_at_1() -> None:
    chain = records("acme")
    assert verify_chain("acme", chain[1:]).first_bad_sequence == 1


def test_another_orgs_event_spliced_in_breaks_the_chain() -> None:
    acme, globex = by_org(records("acme", "globex")).values()
    spliced = [*acme[:3], globex[3], *acme[4:]]
    assert verify_chain("acme", spliced).first_bad_sequence == 4


def test_a_forger_who_rehashes_one_event_is_caught_at_the_next() -> None:
    chain = records("acme")
    forged = {**chain[4], "actor": "mallory"}
    forged["hash"] = event_hash(forged)
    chain[4] = forged
    report = verify_chain("acme", chain)
    assert report.first_bad_sequence == 6
    assert "prev_hash" in (report.problem or "")


def test_verification_stops_at_the_first_bad_event() -> None:
    chain = records("acme")
    chain[2] = altered(chain[2], "content")
    chain[7] = altered(chain[7], "prev_hash")
    assert verify_chain("acme", chain).first_bad_sequence == 3


# --- property: any single alteration of any event of any ledger is named exactly ------------


def ledger_records(mix: Mix) -> dict[str, list[dict[str, Any]]]:
    sequencer = Sequencer()
    outcomes = [sequencer.submit(line, now=NOW) for line in mix.raws]
    return by_org(o.event.to_record() for o in outcomes if isinstance(o, Accepted))


@settings(max_examples=100, deadline=None)
@given(mixes(max_extras=4), st.data())
def test_any_single_alteration_is_found_at_exactly_that_sequence(mix: Mix, data: Any) -> None:
    chains = ledger_records(mix)
    org = data.draw(st.sampled_from(sorted(chains)))
    chain = chains[org]
    index = data.draw(st.integers(0, len(chain) - 1))
    kinds = [*ALTERATIONS, "drop", "swap", "repeat"]
    if index == len(chain) - 1:
        kinds = [k for k in kinds if k not in ("drop", "swap")]  # nothing follows the last
    how = data.draw(st.sampled_from(kinds))
    tampered = list(chain)
    if how == "drop":
        del tampered[index]
    elif how == "swap":
        tampered[index], tampered[index + 1] = tampered[index + 1], tampered[index]
    elif how == "repeat":
        tampered.insert(index + 1, tampered[index])
    else:
        tampered[index] = altered(chain[index], how)
    expected = index + 2 if how == "repeat" else index + 1
    report = verify_chain(org, tampered)
    assert not report.ok
    assert report.first_bad_sequence == expected
    for other, intact in chains.items():
        assert verify_chain(other, intact).ok
