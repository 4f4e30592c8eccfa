"""Read-only SQL, fuzzed: statements composed from dangerous pieces (``readonly_fuzz_support``)
are run through the guard of ``okr-ledger sql`` (``ProjectionStore.read_only``) on a real chDB
store. Each is refused with one clear line, or runs: either way no file appears, the
projections and their tables stay as they were, and the limits stay in force."""

import base64
import hashlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.query_server import ReadOnlyEngine
from projections.readonly_sql import QueryLimits
from projections.store import ProjectionStore
from schemas.errors import ProjectionQueryError, QueryRefusedError
from tests.projections.readonly_fuzz_support import (
    TARGET,
    Watched,
    statements,
    through_the_endpoint,
    through_the_sql_command,
    try_statement,
)
from tests.projections.serve_store_support import post, served_store

LIMITS = QueryLimits(max_seconds=5.0, max_memory_bytes=512 << 20, max_result_bytes=64 << 20)


@pytest.fixture(scope="module")
def engine(watched: "Watched") -> Iterator[ReadOnlyEngine]:
    handle = ReadOnlyEngine(str(watched.root / "clickhouse"), LIMITS)
    yield handle
    handle.close()


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    root = tmp_path_factory.mktemp("fuzz")
    store = ProjectionStore.open(f"chdb://{root / 'clickhouse'}")
    observer = ProjectionStore.open(f"chdb://{root / 'clickhouse'}", migrate=False)
    try:
        yield Watched.start(root, store, observer)
    finally:
        observer.close()
        store.close()


def test_a_statement_nested_deeper_than_the_check_reads_is_refused_with_a_reason(
    watched: Watched,
) -> None:
    """The engine parses up to 1000 levels; the tree's JSON is deeper than the JSON reader and
    the walk take: refused, not a decoding error or a RecursionError."""
    for depth in (200, 400, 600, 900):
        nested = "tuple(" * depth + "1" + ")" * depth
        with pytest.raises((QueryRefusedError, ProjectionQueryError)) as caught:
            watched.store.read_only(f"SELECT {nested}", LIMITS)
        assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(QueryRefusedError, match="nested too deeply to be checked"):
        watched.store.read_only("SELECT " + "tuple(" * 400 + "1" + ")" * 400, LIMITS)
    watched.assert_unchanged()


def test_a_reader_cannot_fetch_an_unbounded_result(watched: Watched) -> None:
    """The engine's memory limit does not count the rows handed to the process (they live in
    Python, or in one buffer of the formatted bytes): the result is bounded by rows and bytes,
    whichever way it is asked for."""
    limits = QueryLimits().settings()
    assert (limits["max_result_rows"], limits["max_result_bytes"]) == (1_000_000, 256 << 20)
    assert list(limits)[-1] == "readonly"  # last: it freezes the others
    too_many = LIMITS.max_result_rows + 1
    wide = LIMITS.max_result_bytes // 1000  # rows of 1000 bytes (not one value repeated: the
    # engine counts a constant column once)
    for query in (
        f"SELECT * FROM numbers({too_many})",
        f"SELECT * FROM numbers({too_many}) FORMAT TSV",
        f"SELECT randomString(1000) FROM numbers({wide})",
        f"SELECT randomString(1000) FROM numbers({wide}) FORMAT RowBinary",
    ):
        with pytest.raises(ProjectionQueryError, match="Limit for result exceeded"):
            watched.store.read_only(query, LIMITS)
    answer = watched.store.read_only("SELECT count() FROM numbers(10000000)", LIMITS)
    assert answer.rows == [(10_000_000,)]  # the bound is on the result, not on what is read


def _forging(then: str) -> str:
    """A statement that fails after some of its output, which is the tree and digest the
    guard's check of ``then`` would read if that output were left for the next query."""
    tree = orjson.dumps({"type": "SelectWithUnionQuery"}).decode()
    digest = hashlib.sha256(then.encode()).hexdigest()
    return (
        f"SELECT '{tree}', '{digest}' FROM numbers(1000000) WHERE NOT throwIf(number > 100000)"
        " FORMAT JSONCompactEachRow"
    )


def test_a_failed_statement_leaves_nothing_for_the_endpoints_next_check(watched: Watched) -> None:
    """chDB hands a failed query's partial output to the next query on the handle: a reader's
    failing statement must not become what the guard reads as the next statement's tree."""
    escape = watched.sql(f"SELECT 'x' INTO OUTFILE '{TARGET}-endpoint.txt'")
    engine = ReadOnlyEngine(str(watched.root / "clickhouse"), LIMITS)
    try:
        for _ in range(2):
            with pytest.raises(ProjectionQueryError, match="throwIf"):
                engine.run(_forging(escape), "TSV", {}, "okr_ledger")
            with pytest.raises(QueryRefusedError, match="INTO OUTFILE"):
                engine.run(escape, "TSV", {}, "okr_ledger")
        assert engine.run("SELECT 1 AS one", "TSV", {}, "okr_ledger") == (b"1\n", "TSV")
    finally:
        engine.close()
    watched.assert_unchanged()


def test_a_failed_statement_leaves_nothing_for_the_stores_next_check(watched: Watched) -> None:
    """The same through ``ProjectionStore.read_only`` (clickhouse-connect's chDB driver)."""
    escape = watched.sql(f"SELECT 'x' INTO OUTFILE '{TARGET}-store.txt'")
    for forging in (_forging(escape), _forging(escape).removesuffix(" FORMAT JSONCompactEachRow")):
        with pytest.raises(ProjectionQueryError, match="throwIf"):
            watched.store.read_only(forging, LIMITS)
        with pytest.raises(QueryRefusedError):
            watched.store.read_only(escape, LIMITS)
    watched.assert_unchanged()


def test_a_reader_cannot_forge_the_check_of_serve_store(tmp_path: Path) -> None:
    """The same by a reader's two HTTP requests to a real ``serve-store`` (the endpoint BI
    tools are given): before the fix the second one wrote its file."""
    target = tmp_path / "data" / "written-by-a-reader.txt"
    escape = f"SELECT 'x' INTO OUTFILE '{target}'"
    with served_store(tmp_path / "data") as served:
        reader = urllib.parse.urlsplit(served.reader_url())
        login = f"{urllib.parse.unquote(reader.username or '')}:"
        login += urllib.parse.unquote(reader.password or "")
        basic = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
        url = f"http://{reader.hostname}:{reader.port}/"
        answers = [  # whether the failure leaves output behind depends on its timing: thrice
            post(url, sql.encode(), basic) for _ in range(3) for sql in (_forging(escape), escape)
        ]
    for forged, then in zip(answers[::2], answers[1::2], strict=True):
        assert (forged[0], "throwIf" in forged[1]) == (500, True)
        assert then == (403, "Code: 164. DB::Exception: INTO OUTFILE is not allowed in "
                        "read-only SQL. (READONLY)\n")  # fmt: skip
    assert not target.exists()


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(statement=statements(), endpoint=st.booleans())
def test_a_composed_statement_is_refused_clearly_or_changes_nothing(
    watched: Watched, engine: ReadOnlyEngine, statement: str, endpoint: bool
) -> None:
    ask = (
        through_the_endpoint(engine) if endpoint else through_the_sql_command(watched.store, LIMITS)
    )
    outcome = try_statement(watched, statement, ask)
    assert outcome.problem is None, f"{statement!r}: {outcome.problem}"


def test_the_composed_statements_reach_every_kind_of_refusal_and_some_run(
    watched: Watched, engine: ReadOnlyEngine
) -> None:
    """The generator is worth its examples: its statements are refused for many reasons
    (not only syntax errors), and some run."""
    reasons: set[str] = set()
    ran = 0

    @settings(max_examples=60, derandomize=True, deadline=None, database=None)
    @given(statement=statements())
    def tally(statement: str) -> None:
        nonlocal ran
        outcome = try_statement(watched, statement, through_the_endpoint(engine))
        assert outcome.problem is None, f"{statement!r}: {outcome.problem}"
        if outcome.refused is None:
            ran += 1
        elif "not allowed in read-only SQL" in outcome.refused:
            reasons.add(outcome.refused.split(" is not allowed")[0].split("(")[0])

    tally()
    assert ran >= 1
    assert len(reasons) >= 6, reasons
