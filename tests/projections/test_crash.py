"""Invariant 5 for the projections: a query command killed while it catches up leaves a store
that the next command completes, equal to a rebuild."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.builders import check_ins, org_setup

CLI = Path(sys.executable).parent / "okr-ledger"


def cli(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, check=False)


def test_a_catch_up_killed_midway_is_completed_and_equals_a_rebuild(tmp_path: Path) -> None:
    source = tmp_path / "submissions.ndjson"
    source.write_bytes(b"\n".join(org_setup("acme") + list(check_ins(15000, "acme"))) + b"\n")
    env = {**os.environ, "OKR_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    assert cli(env, "submit", str(source)).returncode == 0

    query = subprocess.Popen([str(CLI), "progress", "--json"], env=env, stdout=subprocess.DEVNULL)
    store = tmp_path / "data" / "clickhouse"
    deadline = time.monotonic() + 60
    while not store.exists():  # the catch-up has begun: the store is open
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.3)
    assert query.poll() is None, "the query finished before it could be killed"
    query.send_signal(signal.SIGKILL)
    query.wait(timeout=10)

    again = cli(env, "progress", "--json")
    assert again.returncode == 0
    rebuilt = cli(env, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert b"identical" in rebuilt.stdout
