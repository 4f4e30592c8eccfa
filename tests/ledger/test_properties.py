"""Properties of the sequencer and the ledger service over generated mixes of submissions:
valid, duplicate, conflicting, invalid and reordered, across one to three orgs."""

from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from events.chain import verify_chain
from events.ledger import Ledger
from events.outcomes import Accepted, Outcome, Oversized, Rejection
from events.sequencer import Sequencer, decide, decide_batch, parse_ahead, probe
from events.sqlite_log import SqliteEventLog
from events.state import LedgerState
from tests.builders import NOW
from tests.ledger.strategies import Mix, check_tagged_outcomes, further_submissions, mixes
from tests.ledger.support import by_org, ledger_file, run_ledger, sqlite_log

SETTINGS = settings(max_examples=60, deadline=None)


def sequence_mix(mix: Mix) -> tuple[Sequencer, list[Outcome]]:
    sequencer = Sequencer()
    return sequencer, [sequencer.submit(line, now=NOW) for line in mix.raws]


def check_chains(records: list[dict[str, Any]]) -> None:
    """Every org's events run 1..n and the chain verifies."""
    for org, chain in by_org(records).items():
        assert [r["sequence"] for r in chain] == list(range(1, len(chain) + 1))
        report = verify_chain(org, chain)
        assert report.ok, report


def check_accounting(mix: Mix, outcomes: list[Outcome]) -> Counter[str]:
    counts = Counter(type(o).__name__ for o in outcomes)
    assert counts["Accepted"] + counts["Duplicate"] + counts["Rejection"] == len(mix.items)
    assert len(outcomes) == len(mix.items)
    return counts


# --- the sequencer -------------------------------------------------------------------------


@SETTINGS
@given(mixes())
def test_any_mix_leaves_gapless_verified_chains_and_accounts_for_every_submission(
    mix: Mix,
) -> None:
    _, outcomes = sequence_mix(mix)
    counts = check_accounting(mix, outcomes)
    events = [o.event for o in outcomes if isinstance(o, Accepted)]
    assert len(events) == counts["Accepted"]
    assert len({e.event_id for e in events}) == len(events)
    check_chains([e.to_record() for e in events])
    check_tagged_outcomes(mix, outcomes)


@SETTINGS
@given(mixes(), st.data())
def test_a_sequencer_rebuilt_from_the_ledger_decides_like_the_live_one(mix: Mix, data: Any) -> None:
    live, outcomes = sequence_mix(mix)
    events = [o.event for o in outcomes if isinstance(o, Accepted)]
    ordered = sorted(events, key=lambda e: (e.org_id, e.sequence))  # as a log reads them back
    rebuilt = Sequencer.from_ledger(ordered)
    assert rebuilt.state == live.state
    further = data.draw(st.sampled_from([*mix.raws, *further_submissions(mix.orgs)]))
    assert decide(rebuilt.state, further, now=NOW) == decide(live.state, further, now=NOW)


# --- the ledger service on SQLite ----------------------------------------------------------


def check_log(path: Path, outcomes: list[Outcome]) -> None:
    """The log holds exactly the accepted events, and a rejection record for each rejection."""
    with sqlite_log(path) as log:
        assert list(log.read()) == sorted(
            (o.event for o in outcomes if isinstance(o, Accepted)),
            key=lambda e: (e.org_id, e.sequence),
        )
        assert list(log.rejections()) == [o for o in outcomes if isinstance(o, Rejection)]
        check_chains(list(log.read_records()))


@settings(max_examples=40, deadline=None)
@given(mixes(), st.integers(1, 4))
def test_the_ledger_stores_every_outcome_and_batch_size_changes_nothing(
    mix: Mix, batch_size: int
) -> None:
    _, expected = sequence_mix(mix)
    with ledger_file() as small_path, ledger_file() as large_path:
        small = run_ledger(small_path, mix.raws, batch_size)
        large = run_ledger(large_path, mix.raws, 1000)
        assert small == expected
        assert large == expected
        check_log(small_path, small)
        check_log(large_path, large)


@SETTINGS
@given(mixes())
def test_the_half_of_deciding_made_before_the_lock_changes_nothing(mix: Mix) -> None:
    """``parse_ahead`` (what the ledger runs before ``BEGIN IMMEDIATE``) then ``decide_batch``
    gives what ``decide_batch`` alone gives, line by line."""
    _, expected = sequence_mix(mix)
    lines: list[tuple[bytes | Oversized, int | None]] = [(line, None) for line in mix.raws]
    probes = [probe(line) for line, _ in lines]
    parse_ahead(lines, probes)
    assert decide_batch(LedgerState(), lines, now=NOW, probes=probes) == expected


@settings(max_examples=40, deadline=None)
@given(mixes(), st.data())
def test_a_sequencer_rebuilt_from_the_sqlite_log_decides_like_the_live_one(
    mix: Mix, data: Any
) -> None:
    live, _ = sequence_mix(mix)
    further = data.draw(st.sampled_from([*mix.raws, *further_submissions(mix.orgs)]))
    with ledger_file() as path:
        run_ledger(path, mix.raws, batch_size=4)
        with sqlite_log(path) as log:
            rebuilt = Sequencer.from_ledger(log.read())
        assert rebuilt.state == live.state
        reopened = Ledger(SqliteEventLog(path), clock=lambda: NOW)
        try:
            assert reopened.submit(further) == decide(live.state, further, now=NOW)
        finally:
            reopened.log.close()


@settings(max_examples=40, deadline=None)
@given(mixes(max_extras=12), st.data())
def test_two_ledgers_on_one_file_never_fork_a_chain_and_see_each_others_duplicates(
    mix: Mix, data: Any
) -> None:
    """Two writers, each with its own (soon stale) state, take turns on one SQLite file."""
    sizes = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=len(mix.items)))
    with ledger_file() as path:
        writers = [
            Ledger(SqliteEventLog(path), clock=lambda: NOW, batch_size=data.draw(st.integers(1, 3)))
            for _ in range(2)
        ]
        outcomes: list[Outcome] = []
        try:
            start, turn = 0, 0
            while start < len(mix.items):
                size = sizes[turn % len(sizes)]
                chunk = mix.raws[start : start + size]
                outcomes += writers[turn % 2].submit_many((line, None) for line in chunk)
                start += size
                turn += 1
        finally:
            for writer in writers:
                writer.log.close()
        check_accounting(mix, outcomes)
        check_tagged_outcomes(mix, outcomes)
        assert outcomes == sequence_mix(mix)[1]  # as if one writer had done it all
        check_log(path, outcomes)
