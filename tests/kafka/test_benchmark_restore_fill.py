"""``benchmarks/kafka_restore.py``'s fill from the takeover's ledger (``make bench``'s input):
the events in the order they were written, and the sequencer's state file kept from them by
the worker's code, one batch behind, its chain heads those of the ledger at that point."""

import sqlite3
from pathlib import Path

import pytest

from benchmarks import takeover_cost
from benchmarks.kafka_restore import keep_state_file, ledger_rows
from events.log import ChainHead
from processors.sequencer_state import FileState, state_file


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two orgs written in blocks of 7 events, so that their chains interleave."""
    monkeypatch.setattr(takeover_cost, "BLOCK", 7)
    path = tmp_path / "ledger.db"
    takeover_cost.build_ledger(path, 2, 3, 40)
    return path


def _written(path: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT org_id, sequence, hash FROM events ORDER BY rowid").fetchall()


def test_the_fill_reads_the_events_in_the_order_they_were_written(ledger: Path) -> None:
    written = _written(ledger)
    assert len({org for org, _, _ in written[:14]}) == 2  # interleaved
    rows = [row for chunk in ledger_rows(ledger, 30) for row in chunk]
    # A stored row: its bytes, then org_id, sequence, event_id, type, occurred_at, recorded_at,
    # hash.
    assert [(row[1], row[2], row[7]) for row in rows] == written[:30]
    with pytest.raises(SystemExit, match="holds"):
        list(ledger_rows(ledger, len(written) + 1))


def test_the_sequencer_file_is_kept_one_batch_behind(ledger: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    keep_state_file(data, ledger, 45, 10)  # batches of 10, 10, 10, 10 and 5: the last unkept

    assert (data / "kept").read_text() == "40"
    state = FileState(state_file(data, 0), 0)
    try:
        assert state.ledger_next == 40
        assert state.notes()["resume"] == 40
        heads = {
            org: ChainHead(sequence, hashed) for org, sequence, hashed in _written(ledger)[:40]
        }
        assert {org: state.head(org) for org in heads} == heads
    finally:
        state.close()
