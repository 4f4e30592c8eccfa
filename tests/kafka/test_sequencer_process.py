"""The sequencer process's numbered calls (:class:`ProcessRunner`), on a real child process:
each answer reaches its own caller whatever order they come in, and a child killed by SIGKILL
fails every waiting call with a clear error; nothing hangs."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processors import sequencer_core
from processors.kafka_config import WorkerConfig
from processors.sequencer_core import ProcessRunner
from schemas.errors import LedgerUnavailableError
from tests.kafka.process_cores import ScriptedCore


def runner_of(tmp_path: Path) -> ProcessRunner:
    config = WorkerConfig(servers=("127.0.0.1:9",), data_dir=tmp_path)
    return ProcessRunner(config, ScriptedCore)


async def until_waiting(runner: ProcessRunner, *names: str) -> None:
    """Until the child runs a call waiting at each gate of ``names``."""
    for _ in range(1000):
        asked = [asyncio.wait_for(runner.call("waiting", name), 10) for name in names]
        if all(await asyncio.gather(*asked)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the calls at {names} never reached the child")


def test_answers_out_of_order_reach_their_own_callers(tmp_path: Path) -> None:
    """Calls answered in the reverse of the order they were made, a failing call among them,
    and a burst of calls each sleeping for a different time: every caller gets its own
    answer (or its own error)."""

    async def scenario() -> None:
        runner = runner_of(tmp_path)
        try:
            ended: list[str] = []
            calls: dict[str, asyncio.Task[Any]] = {}

            async def made(name: str) -> Any:
                value = await runner.call("wait", name, name.upper())
                ended.append(name)
                return value

            for name in ("a", "b", "c"):
                calls[name] = asyncio.create_task(made(name))
            await until_waiting(runner, "a", "b", "c")
            failing = asyncio.create_task(runner.call("fail", "the third call's error"))
            with pytest.raises(ValueError, match="the third call's error"):
                await asyncio.wait_for(failing, 10)
            for name in ("c", "b", "a"):  # the last made is answered first
                await runner.call("open", name)
                assert await asyncio.wait_for(calls[name], 10) == name.upper()
            assert ended == ["c", "b", "a"]

            # 8 at once (the child's threads): the first made sleeps longest
            delays = [0.05 * (8 - i) for i in range(8)]
            order: list[int] = []

            async def timed(i: int) -> Any:
                value = await runner.call("sleep", delays[i], {"call": i})
                order.append(i)
                return value

            answers = await asyncio.wait_for(asyncio.gather(*(timed(i) for i in range(8))), 20)
            assert answers == [{"call": i} for i in range(8)]
            assert order != sorted(order)  # they did come back out of order
        finally:
            runner.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_sigkilled_child_fails_every_waiting_call_and_nothing_hangs(tmp_path: Path) -> None:
    """Four calls wait in the child when it is killed (a real SIGKILL): each ends at once with
    :class:`LedgerUnavailableError` naming the exit; so does every call made after it."""

    async def scenario() -> None:
        runner = runner_of(tmp_path)
        try:
            pid = await runner.call("pid")
            assert pid != os.getpid()
            names = ["w0", "w1", "w2", "w3"]
            waiting = [asyncio.create_task(runner.call("wait", name, name)) for name in names]
            await until_waiting(runner, *names)
            os.kill(pid, signal.SIGKILL)
            ended = await asyncio.wait_for(
                asyncio.gather(*waiting, return_exceptions=True), timeout=10
            )
            for error in ended:
                assert isinstance(error, LedgerUnavailableError), error
                assert "the sequencer process ended (exit code -9)" in str(error)
            with pytest.raises(LedgerUnavailableError, match=r"exit code -9"):
                await asyncio.wait_for(runner.call("pid"), timeout=10)
        finally:
            runner.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_closing_lets_the_call_under_way_finish_then_closes_the_core(tmp_path: Path) -> None:
    """A worker that stops does not cut the child's call short (a batch's transaction would
    stay open until the next owner fenced it): ``close`` returns once the call under way has
    run to its end and the core is closed, and the child exits by itself."""

    async def scenario() -> ProcessRunner:
        runner = runner_of(tmp_path)
        pid = await runner.call("pid")
        under_way = asyncio.create_task(runner.call("sleep_then_write", 1.0, "finished"))
        await asyncio.sleep(0.3)  # the call has reached the child
        assert pid != os.getpid()
        assert not under_way.done()
        runner.close()
        return runner

    runner = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert (tmp_path / "finished").read_text() == "done"
    assert (tmp_path / "closed").read_text() == "closed"
    assert runner._process.exitcode == 0  # it exited by itself: not terminated, not killed


@pytest.mark.parametrize(
    ("environment", "most"),
    [
        ({}, sequencer_core.MALLOC_ARENAS),
        ({"MALLOC_ARENA_MAX": "4"}, 4),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, 4),
    ],
)
def test_the_sequencer_process_caps_the_c_allocators_arenas_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], most: int
) -> None:
    """Eight threads of the real child allocating at once get at most ``most`` arenas: the cap,
    or the operator's own (uncapped, glibc gives them one each)."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    async def scenario() -> int:
        runner = runner_of(tmp_path)
        try:
            arenas: int = await asyncio.wait_for(runner.call("arenas", 8), 30)
            return arenas
        finally:
            runner.close()

    arenas = asyncio.run(scenario())
    assert 1 <= arenas <= most
    if environment:
        assert arenas > sequencer_core.MALLOC_ARENAS  # the operator's 4, not the cap


def test_threads_uncapped_get_arenas_of_their_own(tmp_path: Path) -> None:
    """The control: the same count in this process (no cap) finds more than the cap."""
    assert ScriptedCore(WorkerConfig(servers=("127.0.0.1:9",), data_dir=tmp_path)).arenas(8) > (
        sequencer_core.MALLOC_ARENAS
    )


AHEAD = """
import asyncio, os, sys, threading
from pathlib import Path
from processors.kafka_config import WorkerConfig
from processors.sequencer_core import ProcessRunner
from tests.kafka.process_cores import ScriptedCore

data, busy, going = Path(sys.argv[1]), sys.argv[2] == "busy", sys.argv[3] == "go"
if busy:  # a thread runs while the runner is made
    threading.Thread(target=threading.Event().wait, daemon=True).start()
runner = ProcessRunner(WorkerConfig(servers=("127.0.0.1:9",), data_dir=data), ScriptedCore, True)
print(runner.method, flush=True)
if going:
    runner.go()
    pid = asyncio.run(asyncio.wait_for(runner.call("pid"), 30))
    assert pid not in (os.getpid(), None), pid
    assert asyncio.run(runner.call("sleep", 0, "answered")) == "answered"
runner.close()
print(runner._process.exitcode, flush=True)
"""
"""Makes a runner ahead (in a process of its own: the test's has threads): ``busy`` with a
thread running; ``go`` lets it make its core and calls it. Prints how the child was started,
then its exit code."""


@pytest.mark.parametrize(("busy", "method"), [(False, "fork"), (True, "spawn")])
def test_a_runner_made_ahead_forks_only_a_process_with_no_other_thread(
    tmp_path: Path, busy: bool, method: str
) -> None:
    """Made ahead (as ``okr-ledger worker`` makes it, before it imports Faust), the child is
    forked if the process runs no other thread, else spawned; either way it answers once told
    to go, closes its core on the stop and exits by itself."""
    found = subprocess.run(
        [sys.executable, "-c", AHEAD, str(tmp_path), "busy" if busy else "alone", "go"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [method, "0"]
    assert (tmp_path / "closed").read_text() == "closed"


def test_a_runner_made_ahead_and_stopped_before_it_goes_never_makes_its_core(
    tmp_path: Path,
) -> None:
    """A worker that stops before its start took the sequencer (the store did not open): the
    child, held, exits at once without making its core (whose Kafka clients would read the
    topics)."""
    found = subprocess.run(
        [sys.executable, "-c", AHEAD, str(tmp_path), "alone", "stop"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["fork", "0"]
    assert not (tmp_path / "closed").exists()
