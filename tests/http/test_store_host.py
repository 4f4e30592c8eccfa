"""The embedded store served by a child process (:mod:`okr_ledger.store_host`): the real
child, chDB and store, driven from this process."""

import time
from pathlib import Path

import pytest

from okr_ledger import store_host
from okr_ledger.settings import Settings
from okr_ledger.store_host import StoreHost
from okr_ledger.wiring import open_projection_store
from projections.client import holder
from schemas.errors import ProjectionUnavailableError
from tests.http.conftest import demo_ledger
from tests.kafka.worker_support import process_state


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    demo_ledger(tmp_path / "data")
    return Settings(data_dir=tmp_path / "data")


def _store(settings: Settings) -> str:
    return str(settings.data_dir / "clickhouse")


def _alive(pid: int) -> bool:
    return process_state(pid) not in ("Z", "-")


def _answers(served: Settings) -> bool:
    """Whether the store of ``served`` answers a statement."""
    with open_projection_store(served) as store:
        return bool(store.rows("SELECT count() FROM {db}.checkpoints")[0][0] == 0)


def test_one_process_serves_several_opens_then_is_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two opens the child stays without the store (free for other processes); after
    MAX_OPENS a new child takes over and the old one exits."""
    monkeypatch.setattr(store_host, "MAX_OPENS", 2)
    host = StoreHost(settings)
    try:
        pids = []
        for _ in range(3):
            with host.opened() as served:
                assert served.resolved_clickhouse_url.startswith("http://")
                assert holder(_store(settings)) == host.pid
                assert _answers(served)
            assert holder(_store(settings)) is None
            assert host.pid is not None
            assert _alive(host.pid)  # warm: waiting for the next open
            pids.append(host.pid)
        assert pids[0] == pids[1] != pids[2]
        assert not _alive(pids[0])
    finally:
        host.close()
    assert not _alive(pids[2])
    assert holder(_store(settings)) is None


def test_a_warm_process_exits_after_a_while_and_the_next_open_starts_another(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_host, "WARM_S", 0.2)
    host = StoreHost(settings)
    try:
        with host.opened():
            first = host.pid
        assert first is not None
        deadline = time.monotonic() + 30
        while _alive(first):
            assert time.monotonic() < deadline, "the warm process did not exit"
            time.sleep(0.05)
        with host.opened() as served:
            assert host.pid != first
            assert _answers(served)
    finally:
        host.close()


def test_a_failure_to_open_is_the_childs_error_and_the_next_open_works(
    settings: Settings,
) -> None:
    """The store held by another process: the child's error, raised here as itself; once the
    store is free, the same (warm) child opens it."""
    host = StoreHost(settings)
    other = StoreHost(settings)
    try:
        with (
            other.opened(),
            pytest.raises(ProjectionUnavailableError, match="is open in another process"),
            host.opened(),
        ):
            pass
        failed = host.pid
        with host.opened() as served:
            assert host.pid == failed
            assert _answers(served)
    finally:
        host.close()
        other.close()


def test_a_server_store_is_used_as_it_is(tmp_path: Path) -> None:
    """No child for a ClickHouse server: its settings as they are."""
    settings = Settings(data_dir=tmp_path, clickhouse_url="http://127.0.0.1:1/db")
    host = StoreHost(settings)
    with host.opened() as served:
        assert served is settings
    assert host.pid is None
    assert host.alive  # nothing to start: a kept reader keeps its client


def test_closing_stops_the_child_and_waits_for_it(settings: Settings) -> None:
    host = StoreHost(settings)
    with host.opened():
        pid = host.pid
        assert pid is not None
    host.close()
    assert not Path(f"/proc/{pid}").exists()  # ended, and waited for: no zombie left


def test_a_child_that_does_not_answer_in_time_is_stopped(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open not answered within START_TIMEOUT_S (a child hung): unavailable, saying so,
    and the child stopped, so that the store is free again."""
    monkeypatch.setattr(store_host, "START_TIMEOUT_S", 0.05)
    host = StoreHost(settings)
    with pytest.raises(ProjectionUnavailableError, match="did not answer within"), host.opened():
        pass
    assert host.pid is None
    assert holder(_store(settings)) is None
