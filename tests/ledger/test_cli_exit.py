"""How the ``okr-ledger`` program ends its process (``okr_ledger.cli.run`` and ``_end``):
without the interpreter's teardown, but after what a normal exit does that matters (the
``atexit`` functions, the flush of buffered output), with the exit code a normal exit would
have."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import chained_events
from tests.ledger.support import store

BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
"""The environment, with Python's output buffered as by default (this machine unbuffers it)."""

PROGRAM = """
import atexit, sys
from okr_ledger.cli import _end
atexit.register(lambda: print("atexit ran", file=sys.stderr))
sys.stdout.write("buffered, never flushed by hand")
_end({code})
print("not reached")
"""


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [("None", 0, ""), ("0", 0, ""), ("3", 3, ""), ("'a message'", 1, "a message\n")],
)
def test_the_fast_exit_keeps_the_exit_code_the_output_and_the_atexit_functions(
    code: str, status: int, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(code=code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=BUFFERED,
    )
    assert done.returncode == status, done.stderr
    assert done.stdout == "buffered, never flushed by hand"  # not lost, and nothing after
    assert done.stderr == message + "atexit ran\n"


def test_export_into_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    """``okr-ledger export | head -1``: the reader is gone long before the last write (the
    export is far larger than a pipe holds). Typer's rule, as click's: exit 1 and nothing on
    stderr (no traceback, no "Exception ignored" at the last flush)."""
    store(tmp_path / "ledger.db", chained_events("acme", check_in_count=2000))
    env = {**BUFFERED, "OKR_DATA_DIR": str(tmp_path)}
    with subprocess.Popen(
        [sys.executable, "-c", "from okr_ledger.cli import run; run()", "export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as export:
        assert export.stdout is not None
        assert export.stderr is not None
        assert export.stdout.readline().startswith(b'{"actor"')
        export.stdout.close()
        assert export.wait(timeout=60) == 1
        assert export.stderr.read() == b""


def test_output_that_cannot_be_written_is_an_error_not_a_success(tmp_path: Path) -> None:
    """``okr-ledger verify --json > /dev/full``: the answer, still buffered when the command
    ends, cannot be written. A normal exit reports it (status 120); the fast exit says so on
    stderr and exits 1, never 0 with the output silently lost."""
    store(tmp_path / "ledger.db", chained_events("acme"))
    with Path("/dev/full").open("wb") as full:
        done = subprocess.run(
            [sys.executable, "-c", "from okr_ledger.cli import run; run()", "verify", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            env={**BUFFERED, "OKR_DATA_DIR": str(tmp_path)},
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert b"cannot write the output" in done.stderr
    assert b"No space left on device" in done.stderr


def test_a_thread_still_working_gets_the_normal_exit_which_waits_for_it() -> None:
    program = PROGRAM.format(code="0").replace(
        'sys.stdout.write("buffered, never flushed by hand")',
        "import threading, time\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        "    print('thread done', file=sys.stderr, flush=True)\n"
        "threading.Thread(target=late).start()",
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
        check=False, env=BUFFERED,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "thread done\natexit ran\n"
