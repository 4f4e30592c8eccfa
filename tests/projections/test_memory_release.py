"""What a catch-up hands back as it goes (issue 9: peak RSS): each commit's Arrow stream in
pieces, the C library's allocator bounded and trimmed with chDB in the process."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from pydantic import SecretStr

import projections.store as store_module
from events import allocator
from okr_ledger import child_process, embedded_runtime
from okr_ledger.projection_compare import fingerprint
from okr_ledger.settings import Settings
from processors import tables as t
from processors.projector import Projector
from projections import client
from projections.arrow_rows import ArrowTables
from projections.migrations import VIEWS_SETTING
from projections.store import ProjectionStore
from schemas.errors import (
    LedgerUnavailableError,
    OkrLedgerError,
    ProjectionError,
    SequenceConflictError,
)
from tests.fresh_python import run_snippet
from tests.projections.conftest import project
from tests.projections.ledgers import LedgerBuilder, small_ledger


def _checkpoints(first: int, count: int) -> list[tuple[Any, ...]]:
    return [
        (t.LEDGER_STREAM, f"org{n}", n, 1_700_000_000_000_000 + n)
        for n in range(first, first + count)
    ]


def test_a_table_taken_comes_in_pieces_of_one_batch_and_reads_back_as_staged() -> None:
    staged = ArrowTables()
    batches = [_checkpoints(n * 1000, 1000) for n in range(3)]
    for batch in batches:
        staged.add(t.CHECKPOINTS, batch)
    pieces = list(staged.take(t.CHECKPOINTS))
    assert staged.tables() == []  # no longer kept here
    whole = b"".join(pieces)
    assert max(len(piece) for piece in pieces) < len(whole) / 2  # never the stream at once
    read = pa.ipc.open_stream(whole).read_all()
    rows = [tuple(row.values()) for row in read.to_pylist()]
    assert [(s, o, p) for s, o, p, _at in rows] == [
        (s, o, p) for batch in batches for s, o, p, _at in batch
    ]


def test_the_c_allocator_maps_large_blocks_on_their_own_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []

    class Library:
        @staticmethod
        def mallopt(parameter: int, value: int) -> int:
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(allocator, "c_library", Library)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    client.bound_c_allocator()
    assert calls == [(-3, client.MMAP_THRESHOLD)]  # glibc's M_MMAP_THRESHOLD
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    client.bound_c_allocator()
    assert calls == [(-3, client.MMAP_THRESHOLD)]  # the environment's choice stands
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    client.bound_c_allocator()
    assert calls == [(-3, client.MMAP_THRESHOLD)]  # the tunable stands too
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.setattr(allocator, "c_library", lambda: None)  # not glibc: nothing to call
    client.bound_c_allocator()
    client.trim_c_allocator()


def test_an_embedded_store_inserts_history_rows_as_they_come_and_collapses_the_others(
    store: ProjectionStore,
) -> None:
    """A history table's insert skips the merge on insert (``HISTORY_INSERT``: its rows never
    share a key within one insert, and the copy costs the catch-up's peak); the checkpoints'
    insert keeps it. Shown with two rows of one key in one insert each (one part each)."""
    assert store.embedded
    staged = ArrowTables()
    at = 1_700_000_000_000_000
    staged.add(t.EVENT_TIMES, [("org", 1, at), ("org", 1, at + 1)])
    store._insert(t.EVENT_TIMES, staged.take(t.EVENT_TIMES))
    staged.add(t.CHECKPOINTS, [(t.LEDGER_STREAM, "org", 1, at), (t.LEDGER_STREAM, "org", 2, at)])
    store._insert(t.CHECKPOINTS, staged.take(t.CHECKPOINTS))
    assert store.rows("SELECT count() FROM {db}.event_times") == [(2,)]
    assert store.rows("SELECT count(), max(position) FROM {db}.checkpoints") == [(1, 2)]


def test_an_embedded_store_trims_after_each_commit_a_server_store_does_not(
    store: ProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(store_module, "trim_c_allocator", lambda: trims.append(1))
    assert store.embedded
    store.insert({t.CHECKPOINTS: _checkpoints(0, 2)})
    assert trims == [1]
    assert store.positions() == {"org0": 0, "org1": 1}
    store.embedded = False  # as on a server: its memory is its own
    store.insert({t.CHECKPOINTS: _checkpoints(2, 1)})
    assert trims == [1]


def test_a_fingerprint_whose_distinct_spills_to_disk_is_the_same(
    store: ProjectionStore, builder: LedgerBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint of a store holding a batch twice (rows not yet collapsed), with chDB's
    ``DISTINCT`` moving its set to disk at once, equals the one kept in memory."""
    small_ledger(builder)
    project(builder, store)
    store.insert(Projector().project(builder.events()))  # every row twice
    assert store.scan_settings() == {
        "max_threads": 1,
        "max_block_size": 8192,
        "max_bytes_before_external_distinct": store_module.SCAN_DISTINCT_BYTES,
    }
    spilled = fingerprint(store)
    monkeypatch.setattr(store, "scan_settings", lambda: {"max_threads": 1})
    assert fingerprint(store) == spilled
    monkeypatch.setattr(
        store,
        "scan_settings",
        lambda: {"max_threads": 1, "max_block_size": 2, "max_bytes_before_external_distinct": 1},
    )
    assert fingerprint(store) == spilled
    assert spilled[t.AUDIT][0] == len(builder.events())


def test_a_drop_with_sync_leaves_no_table_for_later_processes_to_load(
    store: ProjectionStore, builder: LedgerBuilder
) -> None:
    """An Atomic database keeps a dropped table (its parts in memory in each process that
    opens the store, its data on disk) for minutes; ``rebuild`` drops with ``SYNC``."""
    small_ledger(builder)
    project(builder, store)
    query = "SELECT count() FROM system.dropped_tables WHERE database = {db:String}"

    def pending() -> int:
        return int(store.rows(query, {"db": store.database})[0][0])

    before = pending()  # tables the migrations replaced, if any
    store.drop_all(sync=True)
    assert pending() == before
    store.migrate()
    project(builder, store)
    after_migrations = pending()
    store.drop_all()
    assert pending() > after_migrations  # what SYNC avoids


def test_the_fingerprint_before_a_rebuild_is_taken_in_a_process_of_its_own(
    tmp_path: Path,
) -> None:
    """``rebuild``'s first fingerprint runs in a child process, which drops the projections:
    this process never loads chDB for it, and gets the fingerprint a caught-up store has."""
    env = {**os.environ, "OKR_DATA_DIR": str(tmp_path / "data")}
    cli = Path(sys.executable).parent / "okr-ledger"
    subprocess.run([str(cli), "demo"], env=env, check=True, capture_output=True)
    script = (
        "import sys, orjson\n"
        "from okr_ledger.settings import Settings\n"
        "from okr_ledger.embedded_runtime import fingerprint_apart\n"
        "found = fingerprint_apart(Settings())\n"
        "print(orjson.dumps({'chdb': 'chdb' in sys.modules, 'print': found}).decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    answer = orjson.loads(done.stdout)
    assert answer["chdb"] is False
    with ProjectionStore.open(f"chdb://{tmp_path / 'data' / 'clickhouse'}", migrate=False) as kept:
        assert kept.rows(
            "SELECT count() FROM system.tables WHERE database = {db:String}",
            {"db": kept.database},
        ) == [(0,)]  # dropped: the rebuild creates them anew
    assert answer["print"][t.AUDIT][0] == 92


@pytest.mark.parametrize(("left", "upgraded"), [(1, False), (5, False), (12, False), (5, True)])
def test_a_rebuild_repairs_a_store_whose_drop_was_cut_short(
    tmp_path: Path, left: int, upgraded: bool
) -> None:
    """A drop cut short (a rebuild killed in it) leaves the store without some of its tables
    while its migrations say it is complete, and the queries answer from what is left. The
    next ``rebuild`` does not catch up or compare such a store: it says it is damaged, drops
    what is left and projects anew, and the answers are the first ones again. ``upgraded``:
    the store's views are an earlier release's (the version that rebuilds defines them
    otherwise), which opening the store would recreate over the missing tables."""
    env = {**os.environ, "OKR_DATA_DIR": str(tmp_path / "data")}
    cli = Path(sys.executable).parent / "okr-ledger"
    subprocess.run([str(cli), "demo"], env=env, check=True, capture_output=True)
    before = subprocess.run(
        [str(cli), "progress", "--json"], env=env, capture_output=True, check=True
    )
    url = f"chdb://{tmp_path / 'data' / 'clickhouse'}"
    with ProjectionStore.open(url) as store:
        counts = {table: _count(store, table) for table in t.HISTORY}
        for table in list(t.COLUMNS)[:left]:  # dropped in the order drop_all drops them
            store.client.command(f"DROP TABLE {store.database}.{table} SYNC")
        if upgraded:
            store.set_setting(VIEWS_SETTING, "the views of an earlier release")
    rebuilt = subprocess.run([str(cli), "rebuild"], env=env, capture_output=True, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr.decode()
    assert b"damaged" in rebuilt.stdout, rebuilt.stdout
    with ProjectionStore.open(url) as store:
        assert {table: _count(store, table) for table in t.HISTORY} == counts
    after = subprocess.run(
        [str(cli), "progress", "--json"], env=env, capture_output=True, check=True
    )
    assert _progress(after.stdout) == _progress(before.stdout) != []


def _progress(lines: bytes) -> list[tuple[str, str, float]]:
    """Each line's kind, id and progress (its expected progress moves with the clock)."""
    rows = [orjson.loads(line) for line in lines.splitlines()]
    return [(row["kind"], row["id"], row["progress"]) for row in rows]


def _count(store: ProjectionStore, table: str) -> int:
    return int(store.rows(f"SELECT count() FROM {{db}}.{table}")[0][0])


def test_the_child_gets_the_settings_as_given_secrets_included_and_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The settings go to the fingerprint's process as JSON (no pickle): every value as the
    parent has it, a password too, and nothing the child's environment says instead."""
    given = Settings(
        data_dir=tmp_path, submit_batch_size=77, query_password=SecretStr("s3cret word")
    )
    monkeypatch.setenv("OKR_SUBMIT_BATCH_SIZE", "5")
    monkeypatch.setenv("OKR_QUERY_USER", "someone-else")
    again = Settings.model_validate(orjson.loads(child_process.settings_json(given)))
    assert again == given
    assert again.query_password is not None
    assert again.query_password.get_secret_value() == "s3cret word"
    assert again.submit_batch_size == 77
    assert again.query_user == given.query_user != "someone-else"


def test_an_error_in_the_fingerprints_process_is_raised_as_itself(tmp_path: Path) -> None:
    """What the child fails with reaches ``rebuild`` as the same error of
    :mod:`schemas.errors` and message (here: no ledger); any other error as a
    :class:`ProjectionError`."""
    with pytest.raises(LedgerUnavailableError, match="no ledger at"):
        embedded_runtime.fingerprint_apart(Settings(data_dir=tmp_path / "none"))
    assert type(child_process.child_error("SequenceConflictError", "m")) is SequenceConflictError
    other = child_process.child_error("KeyError", "'x'")
    assert type(other) is ProjectionError
    assert str(other) == "'x'"
    assert type(child_process.child_error("OkrLedgerError", "m")) is OkrLedgerError


def test_the_parts_merges_leave_outdated_are_removed_once_the_cleanup_is_woken(
    store: ProjectionStore,
) -> None:
    """chDB's cleanup did not run by itself (chdb-io/chdb#107): the store wakes it after each
    commit (the tables inserted) and when opened (every table), and the outdated parts go;
    the rows stay."""
    for first in (0, 10, 20):
        store.insert({t.CHECKPOINTS: _checkpoints(first, 10)})  # a part each
    store.client.command(f"OPTIMIZE TABLE {store.database}.{t.CHECKPOINTS} FINAL")
    parts = (
        "SELECT countIf(active), countIf(NOT active) FROM system.parts "
        "WHERE database = {db:String} AND table = {table:String}"
    )
    where = {"db": store.database, "table": t.CHECKPOINTS}
    time.sleep(1.1)  # a table's cleanup passes at most once a second (the commits woke it)
    store.wake_cleanup([t.CHECKPOINTS])
    deadline = time.monotonic() + 20
    while store.rows(parts, where) != [(1, 0)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.rows(parts, where) == [(1, 0)]
    assert len(store.positions()) == 30


def test_a_server_store_leaves_its_cleanup_to_the_server(
    store: ProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(store.client, "command", lambda sql, *_a, **_k: sent.append(sql))
    store.embedded = False
    store.wake_cleanup(t.COLUMNS)
    assert sent == []
    store.embedded = True
    store._woken.clear()  # the open woke every table less than a second ago
    store.wake_cleanup([t.CHECKPOINTS])
    assert sent == [f"SYSTEM START CLEANUP {store.database}.{t.CHECKPOINTS}"]


def test_a_table_is_woken_at_most_once_a_second(
    store: ProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chDB's cleanup of a table passes at most once a second: commits in a long-lived process
    (the server, a worker) wake each table once in that time, not at every commit."""
    command = store.client.command
    sent: list[str] = []

    def recorded(sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("SYSTEM START CLEANUP"):
            sent.append(sql.rsplit(".", 1)[1])
        return command(sql, *args, **kwargs)

    monkeypatch.setattr(store.client, "command", recorded)
    time.sleep(store_module.CLEANUP_PASS_SECONDS)  # past the open's wakes
    for first in (0, 10, 20):
        store.insert({t.CHECKPOINTS: _checkpoints(first, 10)})
    assert sent == [t.CHECKPOINTS]
    time.sleep(store_module.CLEANUP_PASS_SECONDS)
    store.insert({t.CHECKPOINTS: _checkpoints(30, 10)})
    assert sent == [t.CHECKPOINTS, t.CHECKPOINTS]


def _status(field: str) -> int:
    """A field of this process's ``/proc/self/status``, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_the_pages_of_chdbs_library_leave_the_process_and_chdb_still_works(
    store: ProjectionStore, builder: LedgerBuilder
) -> None:
    """The pages of the library that chDB's start touched leave the resident set; what is
    touched again is read back from the file: inserts, merges and queries answer as before."""
    before = _status("RssFile")
    dropped = client.release_code_pages()
    assert dropped > 64 << 20  # its code and read-only data: hundreds of MiB mapped
    assert _status("RssFile") < before - (32 << 10)  # kB: at least 32 MiB fewer resident
    small_ledger(builder)
    project(builder, store)
    store.client.command("OPTIMIZE TABLE audit_events FINAL")
    assert fingerprint(store)[t.AUDIT][0] == len(builder.events())


LOAD_THEN_OPEN = """
import json, os, sys
from pathlib import Path
from projections import client
path = Path(sys.argv[1])
seen = []
release = client.release_code_pages

def resident():  # kB of chDB's library in this process
    library = os.path.realpath(sys.modules["chdb._chdb"].__file__)
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        fields = line.split(maxsplit=5)
        if not fields[0].endswith(":"):
            inside = len(fields) == 6 and fields[5].strip() == library
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total

def recorded(library=None):
    seen.append(["chdb._chdb" in sys.modules, (path / "status").exists(), resident()])
    dropped = release(library)
    seen[-1] += [dropped, resident()]
    return dropped

client.release_code_pages = recorded
target = client.parse_url(f"chdb://{path}")
first = client.connect(target, release_load_pages=sys.argv[2] == "release")
second = client.connect(target)  # the store's readers and writers open more connections
answer = first.query("SELECT 1").result_rows
started = (path / "status").exists()
second.close()
first.close()
print(json.dumps({"seen": seen, "started": started, "answer": answer}))
"""


def test_the_first_embedded_connection_drops_the_pages_loading_chdb_touched_before_its_start(
    tmp_path: Path,
) -> None:
    """In a new process, the pages that loading chDB's library made resident leave it after the
    import and before the engine starts (chDB writes ``status`` when it starts), once: the
    open then maps only what the engine reads (on Linux; elsewhere nothing is dropped)."""
    found = _load_then_open(tmp_path / "store", "release")
    assert found["started"]
    assert found["answer"] == [[1]]
    [[imported, started, before, dropped, after]] = found["seen"]  # once, not per connection
    assert imported
    assert not started
    assert before > 64 << 10  # kB: loading it makes much of the library resident
    assert dropped > 64 << 20  # its code and read-only data: hundreds of MiB mapped
    assert after < before // 4


def test_with_the_setting_off_chdbs_load_pages_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OKR_CHDB_RELEASE_LOAD_PAGES=false``: nothing is dropped, and a later connection (a
    reader's) does not drop them either once the engine runs."""
    found = _load_then_open(tmp_path / "store", "keep")
    assert found["started"]
    assert found["answer"] == [[1]]
    assert found["seen"] == []
    assert Settings().chdb_release_load_pages is True
    monkeypatch.setenv("OKR_CHDB_RELEASE_LOAD_PAGES", "false")
    assert Settings().chdb_release_load_pages is False


def _load_then_open(path: Path, release: str) -> dict[str, Any]:
    return run_snippet(LOAD_THEN_OPEN, str(path), release)


def test_only_pages_that_are_the_files_own_are_dropped() -> None:
    """A mapping that is writable, or holds pages of its own (relocated, written), keeps them:
    dropping them would lose what was written. Other files' mappings are not touched."""
    path = "/lib/my lib.so"
    smaps = [
        f"1000-2000 r--p 00000000 fd:00 7 {path}\n",
        "Rss:                   4 kB\n",
        "Anonymous:             0 kB\n",
        "Swap:                  0 kB\n",
        f"2000-3000 r-xp 00001000 fd:00 7 {path}\n",
        "Anonymous:             0 kB\n",
        "Swap:                  0 kB\n",
        f"3000-4000 r--p 00002000 fd:00 7 {path}\n",  # relocated, then made read-only
        "Anonymous:             4 kB\n",
        "Swap:                  0 kB\n",
        f"4000-5000 rw-p 00003000 fd:00 7 {path}\n",
        "Anonymous:             0 kB\n",
        "Swap:                  0 kB\n",
        f"8000-9000 r--p 00004000 fd:00 7 {path}\n",  # relocated, then swapped out
        "Anonymous:             0 kB\n",
        "Swap:                  4 kB\n",
        f"9000-a000 r--p 00005000 fd:00 7 {path}\n",  # no Swap field: not known to be clean
        "Anonymous:             0 kB\n",
        "5000-6000 r-xp 00000000 fd:00 8 /lib/other.so\n",
        "Anonymous:             0 kB\n",
        "Swap:                  0 kB\n",
        "6000-7000 rw-p 00000000 00:00 0\n",
        "Anonymous:             4 kB\n",
        f"a000-b000 r-xp 00006000 fd:00 7 {path}\n",  # the last mapping
        "Anonymous:             0 kB\n",
        "Swap:                  0 kB\n",
        "VmFlags: rd ex mr mw me\n",
    ]
    assert client._clean_ranges(smaps, path) == [
        (0x1000, 0x2000), (0x2000, 0x3000), (0xA000, 0xB000)
    ]  # fmt: skip
    assert client.release_code_pages("/no/such/library.so") == 0


def test_an_embedded_store_drops_chdbs_pages_once_enough_is_staged_and_again_after_more(
    store: ProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[int] = []

    def release() -> int:
        released.append(1)
        return 0

    monkeypatch.setattr(store_module, "release_code_pages", release)
    monkeypatch.setattr(store_module, "RELEASE_CODE_AFTER_BYTES", 1)
    store.embedded = False  # a server's memory is its own
    store.insert({t.CHECKPOINTS: _checkpoints(0, 1)})
    store.stage({t.AUDIT: []})
    assert released == []
    store.embedded = True
    store.insert({t.CHECKPOINTS: _checkpoints(1, 1)})  # checkpoints are not staged as Arrow
    assert released == []
    one = ArrowTables()
    one.add(t.EVENT_TIMES, [("o", 1, 1)])
    monkeypatch.setattr(store_module, "RELEASE_CODE_AFTER_BYTES", one.bytes + 1)  # two rows
    store.stage({t.EVENT_TIMES: [("o", 1, 1)]})
    store.commit()
    assert released == []
    store.stage({t.EVENT_TIMES: [("o", 2, 2)]})  # counted over commits: a worker's are small
    assert released == [1]
    store.commit()
    store.stage({t.EVENT_TIMES: [("o", 3, 3)]})
    assert released == [1]  # then again only once RELEASE_CODE_EVERY_BYTES more are staged
    monkeypatch.setattr(store_module, "RELEASE_CODE_EVERY_BYTES", 2 * one.bytes)
    store.stage({t.EVENT_TIMES: [("o", 4, 4)]})
    assert released == [1, 1]
    store.commit()
    store.stage({t.EVENT_TIMES: [("o", 5, 5)]})
    assert released == [1, 1]
