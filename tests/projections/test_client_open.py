"""Opening the embedded store does not import pyarrow: chDB's own import of it is deferred
(``projections/client.py``), so a command that only reads never pays for it, while a write and
chDB's Arrow API get the real module."""

from pathlib import Path
from typing import Any

from tests.fresh_python import run_snippet

OPEN_READ_WRITE = """
import json, sys
from processors import tables as t
from projections.store import ProjectionStore

def arrow_modules():
    return sorted(m for m in sys.modules if m.split(".")[0] in ("pyarrow", "numpy"))

store = ProjectionStore.open(f"chdb://{sys.argv[1]}")
read = store.client.query("SELECT count() FROM checkpoints").result_rows
after_read = arrow_modules()
store.insert({t.CHECKPOINTS: [(t.LEDGER_STREAM, "org1", 7, 1_700_000_000_000_000)]})
written = store.client.query("SELECT org_id, position FROM checkpoints").result_rows
import chdb, pyarrow
from chdb.state import sqlitelike
handle = chdb.connect(sys.argv[1])
arrow = handle.query("SELECT 2 AS x", "ArrowTable").column("x").to_pylist()
handle.close()
store.close()
print(json.dumps({
    "read": read, "after_read": after_read, "written": written, "arrow": arrow,
    "real": sqlitelike.pa.Table is pyarrow.Table, "module": sys.modules["pyarrow"] is pyarrow,
}))
"""


def _run(path: Path) -> dict[str, Any]:
    return run_snippet(OPEN_READ_WRITE, str(path))


def test_a_read_imports_no_pyarrow_and_a_write_and_chdbs_arrow_api_get_the_real_one(
    tmp_path: Path,
) -> None:
    found = _run(tmp_path / "store")
    assert found["read"] == [[0]]
    assert found["after_read"] == []  # neither pyarrow nor numpy: ~80 ms of CPU not spent
    assert found["written"] == [["org1", 7]]  # the store's Arrow insert imported the real one
    assert found["arrow"] == [2]  # chDB's Arrow output works through what it imported
    assert found["real"] is True
    assert found["module"] is True  # the name belongs to the real module again
