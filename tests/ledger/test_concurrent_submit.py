"""Several ``okr-ledger submit`` processes at once on one SQLite ledger: ordinary contention
never fails a submit, and every submission is recorded exactly once."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from events.chain import verify_chain
from events.sqlite_log import SqliteEventLog
from tests.builders import check_ins, org_setup

CLI = Path(sys.executable).parent / "okr-ledger"
WRITERS = 6


def workload(writer: int, shared: list[bytes]) -> list[bytes]:
    """The ``shared`` lines every writer sends (the setup of ``acme`` and its common
    check-ins) woven with lines of its own (check-ins on ``acme``, and a whole org)."""
    own_org = f"org{writer}"
    own = org_setup(own_org) + list(check_ins(120, own_org)) + list(check_ins(120, "acme"))
    woven = shared[:7] + own[:7]
    for a, b in zip(shared[7:], own[7:], strict=True):
        woven += [a, b]
    return woven


def test_concurrent_submits_on_one_ledger_all_succeed_and_record_everything_once(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OKR_")},
        "OKR_DATA_DIR": str(data_dir),
        "OKR_SUBMIT_BATCH_SIZE": "2",
    }
    files, lines = [], []
    shared = org_setup("acme") + list(check_ins(240, "acme"))
    for writer in range(WRITERS):
        mine = workload(writer, shared)
        lines.append(mine)
        path = tmp_path / f"writer{writer}.ndjson"
        path.write_bytes(b"".join(line + b"\n" for line in mine))
        files.append(path)

    processes = [
        subprocess.Popen(
            [str(CLI), "submit", str(path), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in files
    ]
    results = [process.communicate(timeout=300) for process in processes]

    for process, (_stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
    summaries = [orjson.loads(stdout) for stdout, _ in results]
    unique = {line for mine in lines for line in mine}
    for summary, mine in zip(summaries, lines, strict=True):
        assert summary["rejected"] == 0, summary
        assert summary["accepted"] + summary["duplicate"] == len(mine)
    assert sum(s["accepted"] for s in summaries) == len(unique)

    log = SqliteEventLog(data_dir / "ledger.db")
    try:
        assert list(log.rejections()) == []
        keys: Counter[tuple[str, str]] = Counter()
        for org_id, head in log.heads().items():
            records = list(log.read_records(org_id))
            report = verify_chain(org_id, records)
            assert report.ok, report
            assert [r["sequence"] for r in records] == list(range(1, head.sequence + 1))
            keys.update((org_id, r["source_event_id"]) for r in records)
        expected = {(orjson.loads(x)["org_id"], orjson.loads(x)["source_event_id"]) for x in unique}
        assert set(keys) == expected
        assert set(keys.values()) == {1}
    finally:
        log.close()
