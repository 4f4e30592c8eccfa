"""Altering a stored SQLite event behind the ledger's back: ``verify`` names exactly that event."""

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.chain import verify_chain
from events.outcomes import Accepted
from events.sequencer import Sequencer
from tests.builders import NOW, chained_events
from tests.ledger.strategies import Mix, mixes
from tests.ledger.support import ALTERATIONS, run_cli, scratch_dir, sqlite_log, store, tamper


def cli_verdict(data_dir: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli(data_dir, "verify", "--json")
    return result.exit_code, orjson.loads(result.stdout)


def chain_verdicts(path: Path) -> dict[str, int | None]:
    with sqlite_log(path) as log:
        return {
            org: verify_chain(org, log.read_records(org)).first_bad_sequence for org in log.heads()
        }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    store(directory / "ledger.db", chained_events("acme", "globex", check_in_count=5))
    return directory


def test_the_triggers_refuse_an_update_until_they_are_dropped(data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / "ledger.db")
    with pytest.raises(sqlite3.DatabaseError, match="immutable"):
        db.execute("UPDATE events SET body = body WHERE sequence = 1")
    db.close()
    tamper(data_dir / "ledger.db", "acme", 1, "content")
    assert chain_verdicts(data_dir / "ledger.db")["acme"] == 1


@pytest.mark.parametrize("how", ALTERATIONS)
@pytest.mark.parametrize("sequence", [1, 6, 12])
def test_a_tampered_event_is_named_by_verify(data_dir: Path, how: str, sequence: int) -> None:
    assert cli_verdict(data_dir)[0] == 0
    tamper(data_dir / "ledger.db", "globex", sequence, how)
    code, report = cli_verdict(data_dir)
    assert code == 4
    assert (report["ok"], report["org_id"], report["first_bad_sequence"]) == (
        False,
        "globex",
        sequence,
    )
    orgs = {o["org_id"]: o for o in report["orgs"]}
    assert orgs["acme"]["ok"] is True
    assert chain_verdicts(data_dir / "ledger.db") == {"acme": None, "globex": sequence}


def test_a_content_change_and_a_link_change_are_both_named(data_dir: Path) -> None:
    tamper(data_dir / "ledger.db", "acme", 9, "content")
    tamper(data_dir / "ledger.db", "globex", 3, "forged_link")
    code, report = cli_verdict(data_dir)
    assert code == 4
    assert {o["org_id"]: o["first_bad_sequence"] for o in report["orgs"]} == {
        "acme": 9,
        "globex": 3,
    }
    assert (report["org_id"], report["first_bad_sequence"]) == ("acme", 9)


def test_a_deleted_event_is_named_as_a_gap(data_dir: Path) -> None:
    db = sqlite3.connect(data_dir / "ledger.db")
    db.execute("DROP TRIGGER events_are_permanent")
    db.execute("DELETE FROM events WHERE org_id = 'acme' AND sequence = 4")
    db.commit()
    db.close()
    code, report = cli_verdict(data_dir)
    assert (code, report["org_id"], report["first_bad_sequence"]) == (4, "acme", 4)
    assert report["problem"] == "expected sequence 4, found 5"


def ledger_from(mix: Mix, path: Path) -> dict[str, int]:
    sequencer = Sequencer()
    outcomes = [sequencer.submit(line, now=NOW) for line in mix.raws]
    store(path, [o.event for o in outcomes if isinstance(o, Accepted)])
    return {org: state.last_sequence for org, state in sequencer.state.orgs.items()}


@settings(max_examples=40, deadline=None)
@given(mixes(max_extras=3), st.data())
def test_any_single_alteration_of_a_stored_event_is_named_by_verify(mix: Mix, data: Any) -> None:
    with scratch_dir() as data_dir:
        lengths = ledger_from(mix, data_dir / "ledger.db")
        org = data.draw(st.sampled_from(sorted(lengths)))
        sequence = data.draw(st.integers(1, lengths[org]))
        tamper(data_dir / "ledger.db", org, sequence, data.draw(st.sampled_from(ALTERATIONS)))
        code, report = cli_verdict(data_dir)
        assert code == 4
        assert (report["org_id"], report["first_bad_sequence"]) == (org, sequence)
        expected = {o: (sequence if o == org else None) for o in lengths}
        assert {o["org_id"]: o["first_bad_sequence"] for o in report["orgs"]} == expected
        assert chain_verdicts(data_dir / "ledger.db") == expected
