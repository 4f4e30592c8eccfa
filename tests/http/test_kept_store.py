"""``okr-ledger serve`` on the embedded runtime keeps the projection store open between reads
and closes it once idle (``OKR_HTTP_STORE_IDLE_SECONDS``): real processes (the server, the
CLI beside it) and the real store; :class:`KeptProjections` itself in this process."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from events.ledger import Ledger
from events.outcomes import Accepted
from events.sqlite_log import SqliteEventLog
from okr_ledger import kept_projections
from okr_ledger.embedded_runtime import rebuild_in_place
from okr_ledger.kept_projections import KeptProjections
from okr_ledger.runtime import no_progress
from okr_ledger.settings import Settings
from projections import queries
from projections.client import holder
from schemas.errors import UnknownNameError
from tests.http.conftest import Served, demo_ledger, serving_the_demo
from tests.http.support import check_in, cli
from tests.kafka.worker_support import descendants, process_state

IDLE_S = 8.0
"""Far longer than a CLI query takes to reach the store, even on a loaded machine."""


def _eventually(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.1)


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Served]:
    with serving_the_demo(tmp_path, IDLE_S) as served:
        yield served


def _nps(served: Served) -> float:
    """The value of key result ``nps`` as the server answers ``progress``."""
    with served.server.client(served.reader) as http:
        answer = http.get("/v1/orgs/northwind/progress")
    assert answer.status_code == 200, answer.text
    found = [orjson.loads(line) for line in answer.text.splitlines()]
    (nps,) = [line for line in found if line["id"] == "nps"]
    value: float = nps["value"]
    return value


def test_the_server_holds_the_store_after_a_read_and_lets_go_once_idle(kept: Served) -> None:
    store = str(kept.settings.data_dir / "clickhouse")
    _nps(kept)
    assert kept.server.process is not None
    held_by = holder(store)  # kept open after the read, by the server's store process
    assert held_by in descendants(kept.server.process.pid)
    held = cli(kept.env, "progress", "--org", "northwind", "--json")
    assert holder(store) == held_by, "the CLI took longer than the idle time"
    assert held.returncode == 1
    assert f"is open in another process (pid {held_by}, started by pid " in held.stderr
    assert f"started by pid {kept.server.process.pid})" in held.stderr
    assert "OKR_HTTP_STORE_IDLE_SECONDS" in held.stderr
    _eventually(lambda: holder(store) is None)
    free = cli(kept.env, "progress", "--org", "northwind", "--json")
    assert free.returncode == 0, free.stderr
    assert '"id":"nps"' in free.stdout
    _nps(kept)  # opened again by the next read
    assert holder(store) in descendants(kept.server.process.pid)


REOPENS = 6
"""Reads that each open and close the store again: in-process, chDB would leave ~30 threads
and ~50-70 descriptors behind in the server."""


def _threads_and_descriptors(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def test_a_server_that_reopens_its_store_keeps_none_of_chdbs_threads_or_descriptors(
    tmp_path: Path,
) -> None:
    """chDB leaves ~5 threads (and 8-12 descriptors) behind in a process each time it closes a
    store with tables: the server opens the store in a child process, which takes them along
    when it exits."""
    with serving_the_demo(tmp_path, idle_s=0) as served:  # closed after every read
        assert served.server.process is not None
        pid = served.server.process.pid
        _nps(served), _nps(served)
        threads, descriptors = _threads_and_descriptors(pid)
        for _ in range(REOPENS):
            _nps(served)
        assert holder(str(served.settings.data_dir / "clickhouse")) is None  # closed each time
        threads_after, descriptors_after = _threads_and_descriptors(pid)
    assert threads_after <= threads + 2, (threads, threads_after)
    assert descriptors_after <= descriptors + 4, (descriptors, descriptors_after)


def test_the_stores_process_stops_when_the_server_is_killed(kept: Served) -> None:
    """SIGKILL to the server (the OOM killer, ``kill -9``): its store's process sees its
    standard input close, and stops, so that the store is free for other processes."""
    store = str(kept.settings.data_dir / "clickhouse")
    _nps(kept)
    assert kept.server.process is not None
    held_by = holder(store)
    assert held_by in descendants(kept.server.process.pid)
    kept.server.process.kill()
    kept.server.process.wait(timeout=10)
    _eventually(lambda: holder(store) is None)
    free = cli(kept.env, "progress", "--org", "northwind", "--json")
    assert free.returncode == 0, free.stderr


def test_a_store_process_killed_between_two_reads_fails_no_read(kept: Served) -> None:
    """The store's process ends while the server keeps the store (SIGKILL): the next read
    finds it gone and starts another; no read fails."""
    store = str(kept.settings.data_dir / "clickhouse")
    _nps(kept)
    first = holder(store)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _eventually(lambda: process_state(first) in ("Z", "-"))
    with kept.server.client(kept.reader) as http:
        answers = [http.get("/v1/orgs/northwind/progress").status_code for _ in range(2)]
    assert answers == [200, 200]
    assert holder(store) not in (None, first)


def test_the_kept_store_catches_up_with_events_of_this_server_and_of_other_processes(
    kept: Served,
) -> None:
    assert _nps(kept) != 47
    with kept.server.client(kept.writer) as http:
        posted = http.post("/v1/submissions", json=check_in("nps", 47, source_event_id="k1"))
        assert posted.status_code == 201, posted.text
    assert _nps(kept) == 47
    assert holder(str(kept.settings.data_dir / "clickhouse")) is not None  # still held
    other = subprocess.run(
        [sys.executable, "-c", "from okr_ledger.cli import main; main()", "submit", "-"],
        input=orjson.dumps(check_in("nps", 48, source="cli", source_event_id="k2")),
        env={**os.environ, **kept.env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert other.returncode == 0, other.stderr
    assert _nps(kept) == 48  # appended by another process while the store was held


# -- KeptProjections in this process ----------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    demo_ledger(tmp_path / "data")
    return Settings(data_dir=tmp_path / "data")


def test_reads_share_one_store_until_idle(settings: Settings) -> None:
    kept = KeptProjections(settings, idle_s=0.3)
    try:
        first = kept.read(lambda store: store)
        assert kept.read(lambda store: store) is first
        _eventually(lambda: not kept.is_open, timeout_s=10)
        assert kept.read(lambda store: store) is not first
    finally:
        kept.close()
    assert not kept.is_open


def test_no_idle_time_closes_after_every_read(settings: Settings) -> None:
    kept = KeptProjections(settings, idle_s=0)
    assert kept.read(lambda store: store.positions())["northwind"] > 0
    assert not kept.is_open


def test_an_unknown_name_keeps_the_store_and_any_other_failure_closes_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = KeptProjections(settings, idle_s=60)
    try:
        first = kept.read(lambda store: store)
        with pytest.raises(UnknownNameError):
            kept.read(lambda store: queries.require_org(store, "nowhere"))
        assert kept.read(lambda store: store) is first  # the reader's mistake: kept
        with pytest.raises(ZeroDivisionError):
            kept.read(lambda _store: 1 / 0)
        assert not kept.is_open  # the session may be unusable: closed
        second = kept.read(lambda store: store)
        assert second is not first

        def failing(*_args: object, **_kwargs: object) -> int:
            raise OSError("disk full")

        monkeypatch.setattr(kept_projections, "catch_up", failing)
        with pytest.raises(OSError, match="disk full"):
            kept.read(lambda store: store)
        assert not kept.is_open  # nothing half caught up is kept
        monkeypatch.undo()
        assert kept.read(lambda store: store) is not second
    finally:
        kept.close()


def test_a_store_open_past_the_longest_time_closes_after_a_read(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However often it is read, the store closes once it has been open MAX_OPEN_S."""
    kept = KeptProjections(settings, idle_s=60)
    try:
        first = kept.read(lambda store: store)
        assert kept.is_open
        monkeypatch.setattr(kept_projections, "MAX_OPEN_S", 0.0)
        assert kept.read(lambda store: store) is first  # this read still had it
        assert not kept.is_open
    finally:
        kept.close()


def test_what_the_kept_projector_writes_equals_a_rebuild(settings: Settings) -> None:
    """Events appended between reads (a check-in, a correction of it, another) are projected
    by the projector the reader keeps, its state loaded once: the rows equal a rebuild's."""
    kept = KeptProjections(settings, idle_s=60)
    try:
        kept.read(lambda store: store)
        for n, document in enumerate([
            check_in("nps", 40, source_event_id="r1"),
            {**check_in("nps", 41, source_event_id="r2", type_name="CheckInCorrected"),
             "data": {"key_result_id": "nps", "corrects_source_event_id": "r1", "value": 41,
                      "reason": "typo"}},
            check_in("nps", 44, source_event_id="r3", occurred_at="2026-11-21T10:00:00Z"),
        ]):  # fmt: skip
            log = SqliteEventLog(settings.data_dir / "ledger.db")
            try:
                (outcome,) = Ledger(log).submit_many([(orjson.dumps(document), n)])
            finally:
                log.close()
            assert isinstance(outcome, Accepted), outcome
            kept.read(lambda store: store)
        assert _value(kept, "nps") == 44
    finally:
        kept.close()
    report = rebuild_in_place(settings, no_progress)
    assert report.differences == []
    assert report.compared


def _value(kept: KeptProjections, key_result_id: str) -> float:
    (row,) = kept.read(
        lambda store: store.dicts(
            "SELECT value FROM {db}.key_results_now FINAL WHERE key_result_id = {kr:String}",
            {"kr": key_result_id},
        )
    )
    value: float = row["value"]
    return value
