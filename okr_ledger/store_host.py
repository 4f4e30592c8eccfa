"""An embedded store opened in a child process of its own, which serves it to this process
over ClickHouse's HTTP interface (:mod:`projections.query_server`) while this one uses it.

chDB does not give back all it started when a process closes a store that holds tables: its
MergeTree background executors' threads stay (``background_pool_size`` 2, and the move, fetch
and common pools 1 each: 5 threads a time) and, once it has run statements, 8-12 descriptors.
A process that opens and closes the store again and again (``serve``: after every idle period,
and at every read with ``--workers N``) would collect them until it met its limits. Here they
stay in the child, which this process replaces after :data:`MAX_OPENS` opens, and which exits
once :data:`WARM_S` pass without one; this process never loads chDB.

Between two opens the child stays (warm: ~0.14 s to open the store again, against 0.8-1.2 s
for a new process, which imports and loads chDB first) without the store, which is then free for
other processes. It gets the settings and a writer password made for it alone on its standard
input, then one line per command (``open``, ``close``), and answers each with one line: the
port it serves the store on (loopback, any free one), then that it closed it. It stops when
its standard input closes (this process closed it, or died) or on SIGTERM, and exits if it
fails while serving. It runs in a session of its own, so a terminal's Ctrl-C reaches only this
process, which stops it. A child that ends (killed, out of memory) fails the read under way
(503); the next read finds it gone and starts another. :func:`hosted` (a store served for a
whole server's life) replaces it at once. Every child has a port and a password of its own: a
process that takes the port of one that ended learns nothing that opens the next.
"""

import asyncio
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from okr_ledger.child_process import child_error, settings_json
from okr_ledger.settings import Settings
from projections.client import parse_url
from schemas.errors import ProjectionUnavailableError

if TYPE_CHECKING:
    from projections.query_server import QueryServer

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_OPENS = 20
"""Opens one child serves before it is replaced (it keeps chDB's ~5 threads of each)."""
WARM_S = 300.0
"""How long a child waits without the store for the next open before it exits."""
START_TIMEOUT_S = 3600.0
"""How long a child may take to answer: to start, open the store (its pending migrations too:
one that rewrites a large table may take minutes) and listen; or to close it."""
STOP_TIMEOUT_S = 60.0
"""How long a child may take to stop (its statement running, then chDB's shutdown) before it
is killed."""


STORE_URL_FILE = "OKR_HTTP_STORE_URL_FILE"
"""The environment variable naming, for the worker processes of ``serve --workers N``, the file
(0600, in a directory of the supervisor's own, 0700) that holds the URL of the store's process
(:func:`hosted`); not a setting."""


@contextmanager
def hosted(settings: Settings) -> Iterator[dict[str, str]]:
    """For a server's life: its embedded store served by a child process, replaced whenever it
    ends (killed, out of memory); the environment that lets the server's worker processes find
    it (:data:`STORE_URL_FILE`; nothing for a server store). Each child has a port and a
    password of its own, so a process that takes the port of one that ended gets a password
    that opens nothing; and the password is in no process's environment."""
    if not parse_url(settings.resolved_clickhouse_url).embedded:
        yield {}
        return
    directory = Path(tempfile.mkdtemp(prefix="okr-store-"))  # mode 0700
    path = directory / "url"
    host = StoreHost(settings)
    watchdog = threading.Thread(
        target=_replace_when_gone, args=(host, path), name="okr-store-watchdog", daemon=True
    )
    try:
        _publish(path, host.open())
        watchdog.start()
        yield {STORE_URL_FILE: str(path)}
    finally:
        host.stopping.set()
        with host.lock:  # not while the watchdog replaces the child
            host.close()
        if watchdog.is_alive():
            watchdog.join()
        shutil.rmtree(directory, ignore_errors=True)


def _publish(path: Path, served: Settings) -> None:
    """Write ``served``'s store URL to ``path`` (0600), whole or not at all."""
    new = path.with_name(path.name + ".new")
    descriptor = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(served.resolved_clickhouse_url)
    os.replace(new, path)


RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""The waits before each new try to replace a child that ended (the last one repeated)."""


def _replace_when_gone(host: "StoreHost", path: Path) -> None:
    """Wait for ``host``'s child to end, and replace it (its URL published at ``path``), until
    ``host.stopping``."""
    tries = 0
    while not host.stopping.is_set():
        child = host.child
        if child is not None and child.poll() is None:
            child.wait()
            tries = 0
            if host.stopping.is_set():
                return
            log.warning(
                "the store's process %d ended (%s): starting another", child.pid, child.returncode
            )
        if host.stopping.wait(RESTART_DELAYS_S[min(tries, len(RESTART_DELAYS_S) - 1)]):
            return
        tries += 1
        with host.lock:
            if host.stopping.is_set():
                return
            try:
                host.close()
                _publish(path, host.open())
            except Exception as error:  # the store held by another process meanwhile, ...
                host.close()
                log.warning("the store's process could not open the store: %s", error)


class PublishedStore:
    """The store a server's supervisor serves to its worker processes (:func:`hosted`): its
    URL read anew from the file at each open (a replaced process has another)."""

    embedded = False
    """No child process of this one serves it."""

    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self._url: str | None = None

    @property
    def alive(self) -> bool:
        """Whether the process last opened still serves (its URL is still the file's)."""
        try:
            return self.path.read_text() == self._url
        except OSError:
            return False

    @contextmanager
    def opened(self) -> Iterator[Settings]:
        try:
            url = self.path.read_text()
        except OSError as error:
            raise ProjectionUnavailableError(
                f"the server's store process is not serving: {error.strerror}"
            ) from None
        self._url = url
        yield self.settings.model_copy(update={"clickhouse_url": url})

    def close(self) -> None:
        pass


class _ChildGoneError(Exception):
    """The child ended before it answered (a warm one may exit as it is asked to open)."""


class StoreHost:
    """The child process that serves the embedded store of ``settings`` (see the module
    docstring), started when first needed; not thread-safe (its user takes turns)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        target = parse_url(settings.resolved_clickhouse_url)
        self.embedded = target.embedded
        self._database = target.database
        self.child: subprocess.Popen[bytes] | None = None
        self._password = ""
        self._opens = 0
        self._pending = b""
        self.lock = threading.Lock()
        """Held by :func:`hosted`'s watchdog while it replaces the child."""
        self.stopping = threading.Event()

    @property
    def pid(self) -> int | None:
        """The child's process id (None: no child now)."""
        return None if self.child is None else self.child.pid

    @property
    def alive(self) -> bool:
        """Whether the store is still served: a server store always; an embedded one while its
        child has not ended (one that did is waited for: no zombie stays)."""
        if not self.embedded:
            return True
        return self.child is not None and self.child.poll() is None

    @contextmanager
    def opened(self) -> Iterator[Settings]:
        """The settings, their store served by the child until the context ends (the store
        then closed, and free for other processes); a server store's as they are."""
        if not self.embedded:
            yield self.settings
            return
        served = self.open()
        try:
            yield served
        finally:
            self._release()

    def open(self) -> Settings:
        """Open the store in the child (a new child if there is none, if it has served
        :data:`MAX_OPENS`, or if it ended while warm); these settings pointing at it."""
        from okr_ledger.served_store import store_url
        from projections.query_credentials import Credential

        if self.child is not None and (self._opens >= MAX_OPENS or self.child.poll() is not None):
            self.close()
        for attempt in range(2):
            if self.child is None:
                self._start()
            try:
                answer = self._ask(b"open")
                break
            except _ChildGoneError:
                self.close()
                if attempt:
                    raise ProjectionUnavailableError(
                        "the store's process exited before serving it: see its errors above"
                    ) from None
        if "error" in answer:
            raise child_error(*answer["error"])
        self._opens += 1
        writer = Credential(self.settings.store_writer_user, self._password, "writer")
        url = store_url(writer, HOST, answer["port"], self._database)
        return self.settings.model_copy(update={"clickhouse_url": url})

    def _release(self) -> None:
        """Close the store in the child (which stays, warm); the child stopped if that fails
        (one that ended already has let the store go)."""
        if self.child is None:
            return
        try:
            self._ask(b"close")
        except _ChildGoneError:
            self.close()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self._password = secrets.token_urlsafe(32)
        self._opens = 0
        self._pending = b""
        self.child = subprocess.Popen(
            [sys.executable, "-P", "-m", __name__],  # -P: this installation's, whatever the cwd
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        rest = orjson.dumps({"password": self._password, "warm_s": WARM_S})
        self._send(b'{"settings":%b,%b' % (settings_json(self.settings), rest[1:]))

    def _send(self, line: bytes) -> None:
        stdin = cast(IO[bytes], cast(subprocess.Popen[bytes], self.child).stdin)
        try:
            stdin.write(line + b"\n")
            stdin.flush()
        except BrokenPipeError:
            raise _ChildGoneError from None

    def _ask(self, command: bytes) -> dict[str, Any]:
        """Send ``command``; the child's answer (one line of JSON)."""
        self._send(command)
        fd = cast(IO[bytes], cast(subprocess.Popen[bytes], self.child).stdout).fileno()
        try:
            line, self._pending = _line(fd, self._pending, START_TIMEOUT_S)
        except TimeoutError:
            self.close()
            raise ProjectionUnavailableError(
                f"the store's process did not answer within {START_TIMEOUT_S:.0f}s: stopped"
            ) from None
        if line is None:
            raise _ChildGoneError
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    def close(self) -> None:
        """Stop the child, if any (its standard input closed; SIGKILL after
        :data:`STOP_TIMEOUT_S`), and wait for it: then another process may open the store."""
        child, self.child = self.child, None
        if child is None:
            return
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                with suppress(BrokenPipeError):
                    pipe.close()
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _line(fd: int, pending: bytes, timeout_s: float | None) -> tuple[bytes | None, bytes]:
    """The next line on ``fd`` (after what ``pending`` holds already) and what came after it;
    None at its end. :class:`TimeoutError` if nothing came for ``timeout_s`` (None: no
    limit): told apart from the end, which a process that is ending gives before it can be
    waited for."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while b"\n" not in pending:
        if not poller.poll(None if timeout_s is None else timeout_s * 1000):
            raise TimeoutError
        more = os.read(fd, 4096)
        if not more:
            return None, pending
        pending += more
    line, _, rest = pending.partition(b"\n")
    return line, rest


def _host_here() -> None:
    """The child: see the module docstring."""
    first, pending = _line(0, b"", None)
    if first is None:
        return
    request = orjson.loads(first)
    settings = Settings.model_validate(request["settings"])
    answers = os.fdopen(os.dup(1), "wb")  # what the engine might print goes to stderr instead
    os.dup2(2, 1)
    served: list[int] = []

    def answer(document: dict[str, Any]) -> None:
        answers.write(orjson.dumps(document) + b"\n")
        answers.flush()
        if "port" in document:
            served.append(document["port"])

    while True:
        try:
            command, pending = _line(0, pending, request["warm_s"])
        except TimeoutError:  # no open for WARM_S
            return
        if command != b"open":  # the end of the input
            return
        served.clear()
        try:
            after = _serve(settings, request, pending, answer)
        except BrokenPipeError:  # the parent stopped listening (it closed us, or died)
            return
        except Exception as error:
            if served:  # failed while serving: ended, so that it is replaced (not left warm)
                raise
            with suppress(BrokenPipeError):
                answer({"error": [type(error).__name__, str(error)]})
            continue
        if after is None:  # stopped: the input ended, or SIGTERM
            return
        pending = after
        try:
            answer({"closed": True})
        except BrokenPipeError:
            return


Answer = Callable[[dict[str, Any]], None]


def _serve(
    settings: Settings, request: dict[str, Any], pending: bytes, answer: Answer
) -> bytes | None:
    """Open the store and serve it until ``close`` (what came after it returned), the end of
    the input or SIGTERM (None returned)."""
    from projections.query_credentials import Credential
    from projections.query_server import QueryServer, ReadOnlyEngine, WriterEngine
    from projections.store import READERS, ProjectionStore

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    target = parse_url(settings.resolved_clickhouse_url)
    assert target.path is not None  # an embedded store: StoreHost starts no child for others
    store = ProjectionStore.open(
        settings.resolved_clickhouse_url, release_load_pages=settings.chdb_release_load_pages
    )
    try:
        server = QueryServer(
            ReadOnlyEngine(target.path, settings.query_limits),
            [Credential(settings.store_writer_user, request["password"], "writer")],
            loopback=True,
            writer=WriterEngine(target.path),
            max_waiting=settings.query_max_waiting,
            max_connections=settings.query_max_connections,
            # Its one client keeps connections idle up to OKR_HTTP_STORE_IDLE_SECONDS between
            # reads: closed just as it sent on one, an insert would fail (it is not retried).
            receive_timeout_s=max(
                settings.query_receive_timeout_seconds, settings.http_store_idle_seconds + 10
            ),
            # An answer's statements, sent at once (ProjectionStore.served_chdb), run at once.
            writers=1 + READERS,
        )
        try:
            return asyncio.run(_until_closed(server, pending, answer))
        finally:
            server.close()
    finally:
        store.close()


async def _until_closed(server: "QueryServer", pending: bytes, answer: Answer) -> bytes | None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    after: list[bytes | None] = [None]
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def parent_wrote() -> None:
        more = os.read(0, 4096)
        if not more:  # the end of the input: the parent closed it, or died
            loop.remove_reader(0)
            stop.set()
            return
        nonlocal pending
        pending += more
        if b"\n" in pending:
            _command, _, rest = pending.partition(b"\n")
            after[0] = rest
            loop.remove_reader(0)
            stop.set()

    loop.add_reader(0, parent_wrote)
    if b"\n" in pending:  # the close came with the open
        after[0] = pending.partition(b"\n")[2]
        stop.set()
    await server.serve(HOST, 0, stop, lambda port: answer({"port": port}))
    return after[0]


if __name__ == "__main__":
    _host_here()
