"""Statements composed from the pieces that try to escape read-only SQL, and the check of
what one of them did (``test_readonly_fuzz`` runs a bounded number; a longer campaign may
run the same strategy many more times)."""

import http.server
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from okr_ledger.projection_compare import Fingerprint, fingerprint
from projections.query_server import ReadOnlyEngine
from projections.readonly_sql import QueryLimits
from projections.store import ProjectionStore
from schemas.errors import ProjectionQueryError, QueryRefusedError

TARGET = "{dir}/escaped"
"""Where the pieces try to write (``{dir}`` is the watched directory)."""
SECRET = "{dir}/secret.txt"
"""A file whose content must never come back from a statement."""
URL = "http://127.0.0.1:{port}/"
"""A listener that must never be called."""

_TABLE_FUNCTIONS = (
    f"file('{SECRET}', 'LineAsString')",
    f"file('{TARGET}.csv', 'CSV', 'x String')",
    f"url('{URL}x', 'CSV', 'x String')",
    f"s3('{URL}b/x.csv', 'CSV', 'x String')",
    "hdfs('hdfs://127.0.0.1:1/x', 'CSV', 'x String')",
    "remote('127.0.0.1:1', system.one)",
    "remoteSecure('127.0.0.1:1', system.one)",
    "cluster('default', system.one)",
    "executable('id', 'TabSeparated', 'x String')",
    "input('x String')",
    "mysql('127.0.0.1:1', 'd', 't', 'u', 'p')",
    "postgresql('127.0.0.1:1', 'd', 't', 'u', 'p')",
    f"sqlite('{SECRET}', 't')",
    "jdbc('jdbc:x', 't')",
    "odbc('DSN=x', 't')",
    "dictionary('d')",
    "merge('system', '^users$')",
    "merge(currentDatabase(), '.*')",
    "loop(numbers(10))",
    "numbers(1e12)",
    "numbers_mt(1000000000000)",
    "zeros(1e15)",
    "generateRandom('x String', 1, 1000000000)",
    "view(SELECT 1)",
    f"view(SELECT * FROM file('{SECRET}', 'LineAsString'))",
    "format(CSV, 'x String', 'a')",
    "filesystem('{dir}')",
    "system.one",
    "system.numbers",
    "system.users",
    "system.settings",
    "checkpoints",
    "okr_ledger.checkpoints",
    "key_result_progress_at(as_of = NULL)",
    "okr_ledger.attention_at(as_of = NULL)",
    f"key_result_progress_at(as_of = toDateTime64(file('{SECRET}'), 6))",
    "system.key_result_progress_at(as_of = NULL)",
)
_EXPRESSIONS = (
    "1",
    "'x'",
    "*",
    "number",
    f"file('{SECRET}')",
    "getSetting('readonly')",
    "sleep(3)",
    "sleepEachRow(1)",
    f"url('{URL}')",
    "hostName()",
    "dictGet('d', 'v', 1)",
    "formatRow('CSV', 1)",
    "formatRow('Template', 1)",
    "range(100000000)",
    "arrayMap(x -> x, range(1000))",
    "repeat('x', 1000000000)",
    f"(SELECT * FROM file('{SECRET}', 'LineAsString'))",
    "toString(number) || 'a'",
    "count()",
    "groupArray(number)",
    "sumIf(number, 1)",
    "{p:String}",
    "{t:Identifier}",
    "'\\' INTO OUTFILE \\''",
    "'; DROP TABLE checkpoints; --'",
    "`file`('/etc/passwd')",
    "\"file\"('/etc/passwd')",
    "FILE('/etc/passwd')",
    "currentDatabase()",
    "x",
)
_OUTFILE = (
    f"INTO OUTFILE '{TARGET}.txt'",
    f"INTO OUTFILE '{TARGET}.txt' TRUNCATE",
    f"INTO OUTFILE '{TARGET}.txt' APPEND",
    f"INTO OUTFILE '{TARGET}.txt' AND STDOUT",
    f"INTO OUTFILE '{TARGET}.gz' COMPRESSION 'gzip'",
    f"into outfile '{TARGET}.txt'",
    f"INTO/**/OUTFILE/**/'{TARGET}.txt'",
    f"INTO\nOUTFILE '{TARGET}.txt'",
    f"INTO OUTFILE $${TARGET}.txt$$",
)
_SETTINGS = (
    "SETTINGS readonly = 0",
    "SETTINGS readonly = 2",
    "SETTINGS allow_ddl = 1",
    "SETTINGS max_execution_time = 0",
    "SETTINGS max_memory_usage = 0",
    "SETTINGS max_result_rows = 0",
    "SETTINGS max_result_bytes = 0, result_overflow_mode = 'break'",
    "SETTINGS dialect = 'kusto'",
    "settings readonly=0",
)
_FORMATS = (
    "FORMAT TSV",
    "FORMAT JSONEachRow",
    "FORMAT Template",
    "FORMAT CapnProto",
    "FORMAT Protobuf",
    "FORMAT Null",
    "format csv",
    "FORMAT `CSV`",
)
_SEPARATORS = (" ", "\n", "\t", "/**/", " /* ; */ ", " -- c\n", " # c\n", "\u00a0", "\u2028")
_PREFIXES = (
    "WITH 1 AS x ",
    "WITH (SELECT 1) AS x ",
    "EXPLAIN ",
    "EXPLAIN AST ",
    "EXPLAIN SYNTAX ",
    "EXPLAIN PIPELINE ",
    "EXPLAIN ESTIMATE ",
    "EXPLAIN QUERY TREE ",
    "EXPLAIN PLAN actions = 1 ",
    "EXPLAIN readonly = 0 ",
    "/* c */ ",
    "\ufeff",
    "(",
)
_STATEMENTS = (
    "DROP TABLE checkpoints",
    "TRUNCATE TABLE checkpoints",
    "SET readonly = 0",
    "INSERT INTO checkpoints (stream) VALUES ('x')",
    f"INSERT INTO FUNCTION file('{TARGET}.csv', 'CSV', 'x String') SELECT 'x'",
    f"CREATE TABLE okr_ledger.evil (x String) ENGINE = File(CSV, '{TARGET}.csv')",
    "CREATE VIEW okr_ledger.v AS SELECT 1",
    "SYSTEM FLUSH LOGS",
    "KILL QUERY WHERE 1",
    f"BACKUP TABLE checkpoints TO File('{TARGET}.zip')",
    "SHOW TABLES",
    "SHOW GRANTS",
    "SHOW CREATE TABLE checkpoints",
    "DESCRIBE TABLE checkpoints",
    "DESCRIBE TABLE system.users",
    "EXISTS TABLE checkpoints",
    "USE system",
)
_TRAILERS = (";", "; SELECT 1", ";;", " )", " garbage", "\x00", " /*", " --", "\\")


_SAFE_EXPRESSIONS = ("1", "number", "count()", "'x'", "toString(number)", "*", "sum(number)")
_SAFE_SOURCES = ("numbers(10)", "system.one", "checkpoints", "values('x UInt8', 1, 2)")


def _piece(dangerous: tuple[str, ...], safe: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A safe piece three times in four, else a dangerous one: some statements run, and a
    refusal is often for the one dangerous piece in an otherwise good statement."""
    return st.one_of(*(st.sampled_from(safe),) * 3, st.sampled_from(dangerous))


def _mostly(common: str, *rare: str) -> st.SearchStrategy[str]:
    """``common`` three times in four, else one of ``rare``: most statements parse."""
    return st.one_of(st.just(common), st.just(common), st.just(common), st.sampled_from(rare))


@st.composite
def selects(draw: st.DrawFn, depth: int = 0) -> str:
    """A SELECT with dangerous pieces in each of its places (itself possibly nested)."""
    sep = draw(_mostly(" ", *_SEPARATORS))
    columns = draw(st.lists(_piece(_EXPRESSIONS, _SAFE_EXPRESSIONS), min_size=1, max_size=3))
    source = draw(_piece(_TABLE_FUNCTIONS, _SAFE_SOURCES))
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        source = f"({draw(selects(depth + 1))})"
    head = [f"SELECT{sep}{', '.join(columns)}", f"FROM {source}"]
    if draw(st.integers(0, 3)) == 0:
        joined = draw(_piece(_TABLE_FUNCTIONS, _SAFE_SOURCES))
        head.append(draw(st.sampled_from(("CROSS JOIN", "JOIN", ","))) + f" {joined}")
        if head[-1].startswith("JOIN"):
            head.append("ON 1")
    if draw(st.booleans()):
        head.append(f"WHERE {draw(_piece(_EXPRESSIONS, _SAFE_EXPRESSIONS))}")
    if draw(st.integers(0, 3)) == 0:
        head.append(draw(st.sampled_from(("LIMIT 10", "LIMIT 1000000000", "ORDER BY 1"))))
    if draw(st.integers(0, 3)) == 0:
        head.append(f"UNION ALL {draw(selects(depth + 1)) if depth < 2 else 'SELECT 1'}")
    tail = [  # in the order ClickHouse reads them; a fourth of the time anywhere
        draw(st.sampled_from(clause))
        for clause in (_OUTFILE, _FORMATS, _SETTINGS)
        if draw(st.integers(0, 4)) == 0
    ]
    if tail and draw(st.integers(0, 3)) == 0:
        head.insert(draw(st.integers(1, len(head))), tail.pop())
    return sep.join(head + tail)


@st.composite
def statements(draw: st.DrawFn) -> str:
    """One statement (or an attempt at several) from the dangerous pieces."""
    body = draw(
        st.one_of(
            selects(),
            selects(),
            selects(),
            st.sampled_from(_STATEMENTS),
            st.sampled_from(_STATEMENTS).map(lambda s: f"{s} {_OUTFILE[0]}"),
        )
    )
    prefix = draw(_mostly("", *_PREFIXES))
    if prefix == "(":
        body = f"{body})"
    text = prefix + body + draw(_mostly("", *_TRAILERS))
    if draw(st.integers(0, 7)) == 0:
        text = _respelled(text, draw(st.randoms(use_true_random=False)).random())
    return text


def _respelled(text: str, seed: float) -> str:
    """``text`` with its letters' case changed and look-alikes swapped in, by ``seed``."""
    look_alikes = {"O": "\u039f", "E": "\u0395", ";": "\u037e", " ": "\u3000", "'": "\u2019"}
    out = []
    for i, char in enumerate(text):
        pick = int(seed * 1_000_003 + i * 7919) % 23
        if pick == 0 and char in look_alikes:
            out.append(look_alikes[char])
        elif pick < 4:
            out.append(char.swapcase())
        else:
            out.append(char)
    return "".join(out)


class _Listener(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def do_POST(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class Watched:
    """A directory, a store inside it, a secret file and a listener, and their state before.
    ``store`` runs the statements; ``observer`` (the same store, another session: a statement
    with FORMAT leaves the settings it ran with on its session) reads the state."""

    root: Path
    store: ProjectionStore
    observer: ProjectionStore
    secret: str
    port: int
    hits: list[str]
    tables: list[tuple[str, str]] = field(default_factory=list)
    projections: Fingerprint | None = None
    files: frozenset[str] = frozenset()

    @classmethod
    def start(cls, root: Path, store: ProjectionStore, observer: ProjectionStore) -> "Watched":
        secret = secrets.token_hex(16)
        (root / "secret.txt").write_text(secret)
        hits: list[str] = []
        handler = type("Listener", (_Listener,), {"hits": hits})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        watched = cls(root, store, observer, secret, server.server_address[1], hits)
        watched.tables, watched.projections, watched.files = watched.state()
        return watched

    def state(self) -> tuple[list[tuple[str, str]], Fingerprint, frozenset[str]]:
        tables = self.observer.rows(
            "SELECT database, name FROM system.tables WHERE database NOT IN "
            "('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name"
        )
        files = frozenset(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if "clickhouse" not in p.relative_to(self.root).parts[:1]
        )
        return [(str(d), str(n)) for d, n in tables], fingerprint(self.observer), files

    def assert_unchanged(self) -> None:
        assert self.state() == (self.tables, self.projections, self.files)
        assert self.hits == []

    def sql(self, statement: str) -> str:
        return statement.replace("{dir}", str(self.root)).replace("{port}", str(self.port))


@dataclass(frozen=True)
class Outcome:
    """What one statement did: ``refused`` (its reason), or ran; ``problem`` if it broke a
    property."""

    refused: str | None
    problem: str | None
    seconds: float


Ask = Callable[[str], str]
"""Runs one statement through a guard; returns what it gave, as text."""


def through_the_sql_command(store: ProjectionStore, limits: QueryLimits) -> Ask:
    """``okr-ledger sql``'s way: ``ProjectionStore.read_only``."""

    def ask(sql: str) -> str:
        answer = store.read_only(sql, limits)
        return (answer.formatted or b"").decode("utf-8", "replace") + repr(answer.rows)

    return ask


def through_the_endpoint(engine: ReadOnlyEngine) -> Ask:
    """The query endpoint's way (``serve-store``, the worker): ``ReadOnlyEngine.run``."""

    def ask(sql: str) -> str:
        return engine.run(sql, "TSV", {}, "okr_ledger")[0].decode("utf-8", "replace")

    return ask


def try_statement(watched: Watched, statement: str, ask: Ask) -> Outcome:
    """Run ``statement`` through a guard and check what it did."""
    sql = watched.sql(statement)
    started = time.monotonic()
    refused: str | None = None
    problem: str | None = None
    try:
        if watched.secret in ask(sql):
            problem = "the secret file's content came back"
    except (QueryRefusedError, ProjectionQueryError) as error:
        refused = str(error)
        if not refused.strip() or len(refused.strip().splitlines()) != 1:
            problem = f"not one clear line: {refused!r}"
    except Exception as error:
        problem = f"{type(error).__name__}: {error}"
    seconds = time.monotonic() - started
    if problem is None:
        now = watched.state()
        if now != (watched.tables, watched.projections, watched.files):
            problem = f"the state changed: {now[0]} {sorted(now[2] - watched.files)}"
        elif watched.hits:
            problem = f"the listener was called: {watched.hits}"
    return Outcome(refused, problem, seconds)
