"""Invariant 5 for the projections: a query command killed while it catches up leaves a store
that the next command completes, equal to a rebuild."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from processors.snapshots import FILE_NAME as SNAPSHOTS
from tests.builders import check_ins, org_setup

CLI = Path(sys.executable).parent / "okr-ledger"
DELAYS_S = (0.05, 0.1, 0.03, 0.15, 0.07, 0.25, 0.4)
"""After the catch-up's first commit mark, when each wave kills it (until one lands inside it): the
process's start takes longer than the catch-up and varies with the machine's load."""
INSPECT = """
import json, sys
from projections.store import ProjectionStore
with ProjectionStore.open(sys.argv[1], migrate=False) as store:
    made = store.rows("SELECT count() FROM system.tables WHERE database = {d:String} AND "
                      "name IN ('audit_events', 'checkpoints')", {"d": store.database})
    position = store.positions().get("acme", 0) if made[0][0] == 2 else 0
    rows = store.rows("SELECT count() FROM {db}.audit_events WHERE sequence > {p:UInt64}",
                      {"p": position}) if made[0][0] == 2 else [(0,)]
print(json.dumps([position, int(rows[0][0])]))
"""


def cli(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, check=False)


def committed(store: Path) -> set[str]:
    """The parts of the store's ``checkpoints`` table: a new one is a commit ended."""
    return {part.name for part in (store / "data" / "okr_ledger" / "checkpoints").glob("all_*")}


def killed_catch_up(env: dict[str, str], store: Path, delay_s: float) -> tuple[int, int] | None:
    """Kill ``progress`` ``delay_s`` after its catch-up's first commit: the org's checkpoint
    then and the rows written beyond it, or None if the command finished first."""
    before = committed(store)
    query = subprocess.Popen([str(CLI), "progress", "--json"], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not committed(store) - before:
        if query.poll() is not None:
            return None
        assert time.monotonic() < deadline, "the catch-up never committed"
        time.sleep(0.002)
    time.sleep(delay_s)
    if query.poll() is not None:
        return None
    query.send_signal(signal.SIGKILL)
    query.wait(timeout=10)
    inspect = [sys.executable, "-c", INSPECT, f"chdb://{store}"]
    done = subprocess.run(inspect, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    position, beyond = json.loads(done.stdout.strip().splitlines()[-1])
    return int(position), int(beyond)


def test_a_catch_up_killed_midway_is_completed_and_equals_a_rebuild(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OKR_DATA_DIR": str(data), "COLUMNS": "200"}
    # Made first, with the org's setup, and copied back before each wave: a new store's schema
    # takes longer to make than the catch-up, which is where the kills must land.
    store, pristine = data / "clickhouse", tmp_path / "pristine"
    setup, rest = tmp_path / "setup.ndjson", tmp_path / "check-ins.ndjson"
    setup.write_bytes(b"\n".join(org_setup("acme")) + b"\n")
    rest.write_bytes(b"\n".join(check_ins(15000, "acme")) + b"\n")
    assert cli(env, "submit", str(setup)).returncode == 0
    assert cli(env, "progress", "--json").returncode == 0
    shutil.copytree(store, pristine, symlinks=True)  # as the store had them
    assert cli(env, "submit", str(rest)).returncode == 0
    with sqlite3.connect(f"file:{data / 'ledger.db'}?mode=ro", uri=True) as ledger:
        (head,) = ledger.execute("SELECT max(sequence) FROM events").fetchone()
    begun = len(org_setup("acme"))  # the pristine store's checkpoint
    env["OKR_PROJECTOR_COMMIT_BYTES"] = str(256 << 10)  # many commits, so many places to cut

    landed = []
    for delay_s in DELAYS_S:
        shutil.rmtree(store)
        shutil.copytree(pristine, store, symlinks=True)
        (data / SNAPSHOTS).unlink(missing_ok=True)
        cut = killed_catch_up(env, store, delay_s)
        landed.append((delay_s, cut))
        again = cli(env, "progress", "--json")
        assert again.returncode == 0, again.stderr
        if cut is not None and (cut[1] > 0 or begun < cut[0] < head):
            break  # killed with rows written and the catch-up unfinished
    else:
        where = "(delay, (checkpoint, rows beyond it)) of each wave"
        raise AssertionError(f"no kill landed inside the catch-up: {where}: {landed}")
    rebuilt = cli(env, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert b"identical" in rebuilt.stdout
