"""The ClickHouse connection: one clickhouse-connect client for chDB (embedded) and servers.

``chdb:///path[?database=name]`` opens an in-process chDB engine on ``path`` (one process at a
time); ``http(s)://user:password@host:8123/database`` a server. The database defaults to
``okr_ledger``. clickhouse-connect is imported only here, and only when a store is opened.
"""

import ctypes
import fcntl
import importlib
import os
import re
import sys
import types
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from events import allocator
from schemas.errors import ConfigurationError, MissingExtraError, ProjectionUnavailableError

DEFAULT_DATABASE = "okr_ledger"


class QueryResult(Protocol):
    @property
    def column_names(self) -> Sequence[str]: ...

    @property
    def result_rows(self) -> list[Sequence[Any]]: ...


class ClickHouseClient(Protocol):
    """The part of clickhouse-connect's client that the store uses."""

    database: str | None
    server_settings: dict[str, Any]
    """The server's settings as ``system.settings`` reports them (``.readonly`` on each)."""

    def command(
        self, cmd: str, parameters: Any = None, settings: dict[str, Any] | None = None
    ) -> Any: ...

    def query(
        self,
        query: str,
        parameters: Any = None,
        settings: dict[str, Any] | None = None,
        tz_mode: Any = None,
    ) -> QueryResult: ...

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        *,
        column_names: Sequence[str],
        database: str | None = None,
        column_type_names: Sequence[str] | None = None,
        column_oriented: bool = False,
    ) -> Any: ...

    def raw_insert(
        self,
        table: str,
        column_names: Sequence[str] | None = None,
        insert_block: Any = None,
        settings: dict[str, Any] | None = None,
        fmt: str | None = None,
    ) -> Any: ...

    def raw_query(
        self,
        query: str,
        parameters: Any = None,
        settings: dict[str, Any] | None = None,
        fmt: str | None = None,
    ) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where the projections live, parsed from ``OKR_CLICKHOUSE_URL``."""

    scheme: str
    database: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None

    @property
    def embedded(self) -> bool:
        return self.scheme == "chdb"

    def describe(self) -> str:
        where = self.path if self.embedded else f"{self.host}:{self.port}"
        return f"{self.scheme}://{where} database {self.database}"


def parse_url(url: str, database: str | None = None) -> Target:
    """Parse a store URL; ``database`` (when given) overrides the one in the URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "chdb":
        path = unquote(parts.path) if not parts.netloc else unquote(parts.netloc + parts.path)
        if not path:
            raise ConfigurationError(f"{url!r}: a chdb URL needs a path (chdb:///path)")
        name = database or query.get("database", [DEFAULT_DATABASE])[0]
        return Target("chdb", _checked(name, url), path=path)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigurationError(f"{url!r}: no host")
        name = database or parts.path.strip("/") or DEFAULT_DATABASE
        return Target(
            parts.scheme,
            _checked(name, url),
            host=parts.hostname,
            port=parts.port or (8443 if parts.scheme == "https" else 8123),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    raise ConfigurationError(f"{url!r}: unknown scheme (known: chdb://, http://, https://)")


DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
"""A plain ClickHouse identifier (used unquoted), short enough for a file name with the
suffixes the engine and a rebuild add (``_rebuild_<time>``, ``.sql``)."""


def _checked(database: str, url: str) -> str:
    if not DATABASE_NAME.fullmatch(database):
        raise ConfigurationError(
            f"{url!r}: database {database!r} must be ASCII letters, digits and _, "
            "not starting with a digit, at most 200 characters"
        )
    return database


#: chDB's allocator (jemalloc) keeps freed pages for 5 s by default; returning them at once
#: lowers a catch-up's peak RSS by 40-60 MiB at no measurable cost. Read when chDB loads, so
#: set before the first embedded connection; a value the environment already has wins.
CHDB_ALLOCATOR = ("JE_MALLOC_CONF", "dirty_decay_ms:0")


CHDB_SESSION = {"log_queries": 0, "log_processors_profiles": 0, "use_query_condition_cache": 0}
"""Settings of every chDB connection. chDB has no ``system.query_log`` or
``system.processors_profile_log`` to write to, yet by default it gathers each statement's
entries for them: about 1.5 of a small statement's 3 ms of CPU (14 % of the projection tests'
CPU), for nothing. The query condition cache remembered which granules a filter with a scalar
subquery matched and reused that for another value of the subquery: a view as of one time
answered with another's rows (the views set it off themselves too; ``as_of_sequence``'s
filter is of that kind). A command's process is too short-lived to gain from it."""

MMAP_THRESHOLD = 1 << 20
"""With chDB in the process, blocks of at least this size get their own mapping from the C
library's allocator (glibc's ``M_MMAP_THRESHOLD``), handed back to the kernel when freed. By
default glibc raises that threshold to the size of each large block freed (up to 32 MiB), so the
Arrow stream of each commit (~16 MiB) and pyarrow's larger buffers end up on its heaps, which
keep the pages: 10-18 MiB of the first catch-up's peak RSS at 1,000,000 events. A value the
environment sets (``MALLOC_MMAP_THRESHOLD_``, or ``mmap_threshold`` in ``GLIBC_TUNABLES``)
wins."""


def bound_c_allocator() -> None:
    """Give blocks of :data:`MMAP_THRESHOLD` or more their own mappings (glibc only)."""
    allocator.set_option(allocator.M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_c_allocator() -> None:
    """Hand the pages the C library's allocator keeps free back to the kernel (glibc's
    ``malloc_trim``; each thread's heap): chDB's allocator cannot reuse them, so what a
    commit's buffers freed would otherwise add to what the next insert and merges take."""
    allocator.trim()


MADV_DONTNEED = 4
"""Linux's ``madvise`` advice: drop the pages of a range from this process (a private file
mapping's pages are read again from the file when touched)."""


def release_code_pages(path: str | None = None) -> int:
    """Drop from this process the pages of chDB's library (``path``, by default the loaded
    ``chdb._chdb``) that it holds now; the bytes of the ranges advised (0 where this is not
    Linux). What is touched again is read back from the page cache (a minor fault).

    Loading chDB makes 170-200 MiB of its 530 MiB library resident, and starting its engine
    40-50 MiB more, of which inserts, merges and queries then touch ~60 MiB. How much a fault
    maps depends on the page cache: where the file was written or read whole (an install, a
    copy), the kernel holds it in large folios and maps a whole folio (up to 2 MiB) on a
    fault, which ``MADV_RANDOM`` does not stop. Only mappings that are not writable and hold no
    page of their own (``Anonymous: 0`` and ``Swap: 0``: no relocated or written page, in
    memory or swapped out; such a page would be lost) are dropped."""
    if path is None:
        module = sys.modules.get("chdb._chdb")
        path = getattr(module, "__file__", None)
    madvise = getattr(allocator.c_library(), "madvise", None)
    if not path or madvise is None:
        return 0
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            ranges = _clean_ranges(smaps, os.path.realpath(path))  # smaps names the real file
    except OSError:
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    dropped = 0
    for start, end in ranges:
        if madvise(start, end - start, MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped


def _clean_ranges(smaps: Iterable[str], path: str) -> list[tuple[int, int]]:
    """The ranges of ``path``'s mappings that are not writable and hold no page of their own,
    in memory (``Anonymous``) or swapped out (``Swap``): a mapping is kept whole unless both
    fields say 0."""
    found: list[tuple[int, int]] = []
    mapping: tuple[int, int] | None = None
    clean: set[str] = set()
    for line in smaps:
        fields = line.split(maxsplit=5)
        if not fields:
            continue
        if not fields[0].endswith(":"):  # a mapping's header: range perms offset dev inode path
            if mapping is not None and clean == _OWN_PAGES:
                found.append(mapping)
            mapping, clean = None, set()
            if len(fields) == 6 and fields[5].rstrip("\n") == path and "w" not in fields[1]:
                start, _, end = fields[0].partition("-")
                mapping = (int(start, 16), int(end, 16))
        elif mapping is not None and fields[0] in _OWN_PAGES:
            if fields[1] != "0":
                mapping = None
            else:
                clean.add(fields[0])
    if mapping is not None and clean == _OWN_PAGES:
        found.append(mapping)
    return found


_OWN_PAGES = {"Anonymous:", "Swap:"}
"""The fields of a mapping in ``smaps`` that count pages the file does not hold."""


_loaded: list[int] = []
"""The bytes :func:`load_chdb` dropped, once it has run in this process."""


def load_chdb(release: bool = True) -> None:
    """Import chDB (without the pyarrow it would import: :func:`_pyarrow_deferred`) and, with
    ``release``, before its engine starts, drop the pages that loading its library touched
    (:func:`release_code_pages`); once per process.

    Most of those pages only the load (relocations, static constructors) reads, and where the
    library sits in the page cache in large folios (right after an install) they are 200 MiB:
    dropped, the engine's start maps what it reads again, and opening a store peaks at
    300-310 MiB instead of 400-410 (``benchmarks/profiling/memory_profile.py``)."""
    if _loaded:
        return
    try:
        with _pyarrow_deferred():
            # The library loads; its engine starts with a connection. ``chdb.state`` is what
            # ``chdb.connect`` imports on first use (and with it, pyarrow).
            import chdb.state  # noqa: F401
    except ImportError as error:
        raise MissingExtraError("chdb", "embedded") from error
    _loaded.append(release_code_pages() if release else 0)


class _DeferredPyarrow(types.ModuleType):
    """What chDB gets for ``import pyarrow`` while :func:`load_chdb` imports it: reading any
    attribute imports the real pyarrow (once), whose names it then takes as its own (later
    reads are plain attribute reads)."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("pyarrow") is self:
            sys.modules.pop("pyarrow", None)  # another thread may have taken it out already
        real = importlib.import_module("pyarrow")
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


@contextmanager
def _pyarrow_deferred() -> Iterator[None]:
    """chDB imports pyarrow (and numpy) as it loads, for its Arrow APIs alone, which neither
    clickhouse-connect nor the store uses: 80-90 ms of CPU in every command that opens the
    store, though only one that writes needs pyarrow (``projections/arrow_rows.py`` imports
    it then). While chDB loads, ``import pyarrow`` gets a :class:`_DeferredPyarrow`; once
    loaded, the name is free again for the real module."""
    if "pyarrow" in sys.modules:
        yield
        return
    stand_in = _DeferredPyarrow("pyarrow")
    sys.modules["pyarrow"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("pyarrow") is stand_in:
            del sys.modules["pyarrow"]


def unanswered(error: BaseException) -> bool:
    """Whether ``error`` is a ClickHouse server that did not answer (the connection refused,
    cut or timed out: a server down, paused or unreachable), not a statement it refused.
    clickhouse-connect raises ``OperationalError`` for a failed HTTP request or response, and
    its subclass ``StreamFailureError`` for a statement that failed while streaming (chDB's
    too). Its module is looked up, not imported: an error cannot be of a module not loaded."""
    if isinstance(error, OSError):
        return True
    exceptions = sys.modules.get("clickhouse_connect.driver.exceptions")
    if exceptions is None:
        return False
    return isinstance(error, exceptions.OperationalError) and not isinstance(
        error, exceptions.StreamFailureError
    )


def connect(target: Target, release_load_pages: bool = True) -> ClickHouseClient:
    """A client for ``target`` (not yet inside its database: the store creates it first).
    ``release_load_pages``: see :func:`load_chdb` (``OKR_CHDB_RELEASE_LOAD_PAGES``)."""
    if target.embedded:
        os.environ.setdefault(*CHDB_ALLOCATOR)
        bound_c_allocator()
        load_chdb(release_load_pages)
    try:
        import clickhouse_connect
    except ModuleNotFoundError as error:
        extra = "embedded" if target.embedded else "clickhouse"
        raise MissingExtraError("clickhouse-connect", extra) from error
    require_not_held(target)
    try:
        if target.embedded:
            assert target.path is not None
            client: Any = clickhouse_connect.get_client(
                dsn=f"chdb://{target.path}", settings=dict(CHDB_SESSION)
            )
        else:
            client = clickhouse_connect.get_client(
                host=target.host,
                port=target.port,
                username=target.username or "default",
                password=target.password or "",
                secure=target.scheme == "https",
                # Its own connections, closed with it: the shared pool would keep those to a
                # server gone (a store's process that exited) until evicted.
                dedicated_pool=True,
            )
    except ImportError as error:
        raise MissingExtraError("chdb", "embedded") from error
    except Exception as error:
        raise ProjectionUnavailableError(
            f"cannot open the projection store {target.describe()}: {error}"
        ) from error
    typed: ClickHouseClient = client
    return typed


def require_not_held(target: Target) -> None:
    """:class:`ProjectionUnavailableError`, saying why and what to do, if ``target`` is an
    embedded store that another process has open."""
    if target.embedded and target.path is not None and (pid := holder(target.path)):
        parent = _parent(pid)
        started_by = f", started by pid {parent}" if parent not in (None, 0, 1) else ""
        raise ProjectionUnavailableError(
            f"the embedded store {target.path} is open in another process (pid {pid}"
            f"{started_by}), and "
            "chDB lets only one process open it: stop that process, or run `okr-ledger "
            "serve-store` as the one process that holds the store and set OKR_CLICKHOUSE_URL "
            "of every other process (workers, BI tools) to the URL it prints (an `okr-ledger "
            "serve` holds it for OKR_HTTP_STORE_IDLE_SECONDS after each read, and with "
            "--workers N for as long as it runs: read through its API, or try again when it is "
            "idle)"
        )


def _parent(pid: int) -> int | None:
    """The parent of process ``pid`` (Linux: /proc), or None: a store's process (``serve``'s)
    is named with the server that started it."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def holder(path: str) -> int | None:
    """The id of another live process that has the chDB directory ``path`` open, or ``None``.

    Like a ClickHouse server, chDB writes its process id into ``path/status`` and holds an
    exclusive ``flock`` on that file while the directory is open. The lock is tried only when
    the file names another live process (so that a process starting now never finds it taken).
    """
    status = Path(path) / "status"
    try:
        text = status.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return None
    found = re.search(r"^PID: (\d{1,10})$", text, re.MULTILINE)
    pid = int(found.group(1)) if found else 0
    if pid in (0, os.getpid()):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a process that was killed
    except PermissionError:
        pass  # alive, another user's
    try:
        descriptor = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return pid
    finally:
        os.close(descriptor)  # releases the lock if it was taken
    return None
