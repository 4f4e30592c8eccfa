"""Invariant 5 on the embedded ledger: a ``submit`` killed at any moment and run again loses
and duplicates nothing."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from events.chain import verify_chain
from events.sqlite_log import SqliteEventLog
from tests.builders import check_ins, org_setup
from tests.ledger.state_checks import assert_store_is_the_fold, fold_of

CLI = Path(sys.executable).parent / "okr-ledger"


def stored_events(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_killed_submit_run_again_records_every_submission_once(tmp_path: Path) -> None:
    lines = org_setup("acme") + list(check_ins(15000, "acme"))
    source = tmp_path / "submissions.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    env = {**os.environ, "OKR_DATA_DIR": str(tmp_path / "data"), "OKR_SUBMIT_BATCH_SIZE": "200"}
    ledger = tmp_path / "data" / "ledger.db"

    process = subprocess.Popen(
        [str(CLI), "submit", str(source), "--json"], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while stored_events(ledger) < 1000:  # killed mid-file, after some batches committed
        assert process.poll() is None, "submit finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    kept = stored_events(ledger)
    assert 0 < kept < len(lines)

    again = subprocess.run(
        [str(CLI), "submit", str(source), "--json"], env=env, capture_output=True, check=False
    )
    summary = orjson.loads(again.stdout)
    assert again.returncode == 0
    assert summary["duplicate"] == kept
    assert summary["accepted"] == len(lines) - kept

    log = SqliteEventLog(ledger)
    try:
        records = list(log.read_records("acme"))
        assert verify_chain("acme", records).ok
        keys = [r["source_event_id"] for r in records]
        assert len(keys) == len(set(keys)) == len(lines)
        assert_store_is_the_fold(log.state, ledger, fold_of(log))  # the killed batch left none
    finally:
        log.close()
