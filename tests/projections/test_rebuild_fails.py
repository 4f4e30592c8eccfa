"""`okr-ledger rebuild` beside live projections when a store fails in the middle of the
comparison (after the replay, while fingerprints and row hashes are read): a real
``serve-store`` process SIGKILLed at one read (the server down), or a real statement refused
(the table it reads dropped just before it), on the ClickHouse-server path (the live and the
fresh database on one server) and the embedded path (the live store served, the fresh one a
temporary chDB directory in this process).

The command ends with one line on stderr that names the failing store, exit 1 (the CLI's
code for an ``OkrLedgerError``), no "identical" nor "differs"; the live projections are
unchanged; the fresh database is dropped (or, the server down, named as left there), or kept
and named with ``--keep``; no temporary directory is left.

The runtime is :class:`okr_ledger.kafka_runtime.KafkaRuntime` over a SQLite ledger: its
``rebuild`` reads the ledger through the same ``EventLog`` interface, so no broker is needed
for what is tested here (the stores; the ledger on Kafka is tests/kafka/test_rebuild_live.py).
"""

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from okr_ledger import live_rebuild, query_cli
from okr_ledger.kafka_runtime import KafkaRuntime
from okr_ledger.projection_compare import Fingerprint, differing_current, fingerprint
from okr_ledger.settings import Settings
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections.store import ProjectionStore
from tests.projections.cli_support import main_exit
from tests.projections.ledgers import LedgerBuilder, day
from tests.projections.serve_store_support import ServedStore, start_store

LIVE, FRESH = "the live projections", "the rebuild"


@dataclass(frozen=True)
class Failure:
    """Where the comparison fails: at the first read of ``store`` (``LIVE`` or ``FRESH``)
    whose statement holds ``read``, by ``how``: ``kill`` (serve-store SIGKILLed: on the
    server path both stores go down, and the error names the one read then) or ``refuse``
    (the table it reads dropped first: the store refuses the statement)."""

    server: bool
    read: str
    store: str
    how: str
    keep: bool = False


FAILURES = {
    "server, down at the row hash": Failure(True, "SELECT version()", LIVE, "kill"),
    "server, down at the rebuild's fingerprint": Failure(True, "sum(h)", FRESH, "kill"),
    "server, down, kept": Failure(True, "argMaxIf", LIVE, "kill", keep=True),
    "server, refused in describe_difference": Failure(True, "SELECT DISTINCT", FRESH, "refuse"),
    "chdb, live down at differing_current": Failure(False, "argMaxIf", LIVE, "kill"),
    "chdb, live down in describe_difference": Failure(False, "SELECT DISTINCT", LIVE, "kill"),
    "chdb, live down, kept": Failure(False, "sum(h)", LIVE, "kill", keep=True),
    "chdb, the rebuild refuses its fingerprint": Failure(False, "sum(h)", FRESH, "refuse"),
}


def a_ledger(data: Path) -> LedgerBuilder:
    """A ledger in ``data`` (made here) with a theme and an objective; the caller closes it."""
    data.mkdir()
    builder = LedgerBuilder(data / "ledger.db")
    try:
        builder.skeleton(themes=("growth",))
        builder.objective("o", theme_ids=["growth"])
    except BaseException:
        builder.close()
        raise
    return builder


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedStore]:
    """A ledger, projected by a real serve-store (through its writer URL), one live row then
    changed (so the comparison reaches ``describe_difference``)."""
    data = tmp_path / "data"
    builder = a_ledger(data)
    try:
        builder.key_result("k", "o")
        for n in range(3):
            builder.check_in("k", n, day(n))
        served = start_store(data)
        try:
            with ProjectionStore.open(served.writer_url) as writer:
                EmbeddedRunner(builder.log, writer, Projector()).catch_up()
                writer.client.command(
                    "ALTER TABLE okr_ledger.objective_versions UPDATE title = 'tampered' "
                    "WHERE sequence = (SELECT min(sequence) FROM okr_ledger.objective_versions)"
                    " SETTINGS mutations_sync = 1"
                )
        except BaseException:
            served.stop()
            raise
    finally:
        builder.close()
    yield served
    served.stop()


def live_state(url: str) -> tuple[Fingerprint, list[str]]:
    """The live projections' fingerprint (every table, uncut) and the server's databases."""
    with ProjectionStore.open(url, "okr_ledger", migrate=False) as store:
        databases = [str(name) for (name,) in store.rows("SHOW DATABASES")]
        return fingerprint(store), databases


def failing_at(
    patch: pytest.MonkeyPatch, failure: Failure, served: ServedStore
) -> Callable[[], bool]:
    """Break the comparison at ``failure``'s read (only after the replay): returns whether
    it was reached."""
    real_replay, real_rows = live_rebuild.replay, ProjectionStore.rows
    state = {"replayed": False, "failed": False}

    def replay(*args: Any) -> int:
        events = real_replay(*args)
        state["replayed"] = True
        return events

    def rows(store: ProjectionStore, query: str, *args: Any, **kwargs: Any) -> Any:
        fresh = store.embedded or "_rebuild_" in store.database
        if (
            state["replayed"]
            and not state["failed"]
            and failure.read in query
            and (FRESH if fresh else LIVE) == failure.store
        ):
            state["failed"] = True
            if failure.how == "kill":
                served.process.kill()
                served.process.wait(30)
            else:  # a real refusal: the statement reads a table no longer there
                table = next(t for t in ("objective_versions", "audit_events") if t in query)
                store.client.command(f"DROP TABLE {store.database}.{table}")
        return real_rows(store, query, *args, **kwargs)

    patch.setattr(live_rebuild, "replay", replay)
    patch.setattr(ProjectionStore, "rows", rows)
    return lambda: state["failed"]


def run_rebuild(*args: str) -> int:
    return main_exit("rebuild", *args)


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_store_failing_in_the_comparison_ends_the_rebuild_with_one_line(
    failure: Failure,
    served: ServedStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = Path(served.env["OKR_DATA_DIR"])
    monkeypatch.setenv("OKR_DATA_DIR", str(data))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("OKR_LEDGER_URL", raising=False)
    if failure.server:  # the writer's URL: a ClickHouse server (serve-store speaks its HTTP)
        monkeypatch.setenv("OKR_CLICKHOUSE_URL", served.writer_url)
    else:  # the embedded store, served at the worker's endpoint (its token in OKR_DATA_DIR)
        monkeypatch.delenv("OKR_CLICKHOUSE_URL", raising=False)
        monkeypatch.setenv("OKR_WORKER_WEB_PORT", str(served.port))
    monkeypatch.setattr(query_cli, "bootstrap", lambda: KafkaRuntime(Settings()))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    before, _ = live_state(served.writer_url)
    failed = failing_at(monkeypatch, failure, served)

    code = run_rebuild(*(["--keep"] if failure.keep else []))

    monkeypatch.undo()  # the real store again, to look at what is left
    captured = capsys.readouterr()
    assert failed(), "the comparison never reached the read to fail"
    assert code == 1, captured.out + captured.err
    assert "identical" not in captured.out
    assert "differs" not in captured.out
    lines = [n for n in captured.err.splitlines() if not n.startswith("rebuilding ")]  # bar
    assert len(lines) == 1, captured.err
    (line,) = lines
    cause = "did not answer (" if failure.how == "kill" else "refused a statement: "
    assert line.startswith(
        f"error: the rebuild was cut short, nothing compared: {failure.store} ("
    ), line
    assert cause in line, line
    assert "Traceback" not in line
    assert "HTTPConnectionPool" not in line

    kept = list(temporary.iterdir())
    at = f"{served.host}:{served.port}"
    back = start_store(data) if failure.how == "kill" else served  # the store back
    try:
        after, databases = live_state(back.writer_url)
    finally:
        if back is not served:
            back.stop()
    assert after == before
    rebuilt = [d for d in databases if d.startswith("okr_ledger_rebuild_")]
    if not failure.server:
        assert rebuilt == []
        if failure.keep:  # the temporary directory kept, and named
            assert len(kept) == 1
            assert kept[0].name.startswith("okr-rebuild-")
            assert line.endswith(f"(kept the rebuild: chdb://{kept[0]})"), line
        else:
            assert kept == []
        return
    assert kept == []
    if failure.how == "refuse":  # the server answers: the fresh database dropped
        assert rebuilt == []
        return
    assert len(rebuilt) == 1  # the server was down: left there, and named
    where = f"{at} database {rebuilt[0]}"
    if failure.keep:
        assert line.endswith(f"(kept the rebuild: http://{where})"), line
    else:
        assert line.endswith(
            f"(the rebuild's database is left on the server, http://{where}: its drop failed "
            f"([Errno 111] Connection refused); drop it with `DROP DATABASE {rebuilt[0]}`)"
        ), line


def test_a_drop_that_fails_after_the_comparison_is_said_beside_it(
    served: ServedStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The server goes down once every read is done: the comparison is reported (it
    finished), and the fresh database it could not drop is named, with how to drop it."""
    monkeypatch.setenv("OKR_DATA_DIR", served.env["OKR_DATA_DIR"])
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.delenv("OKR_LEDGER_URL", raising=False)
    monkeypatch.setenv("OKR_CLICKHOUSE_URL", served.writer_url)
    monkeypatch.setattr(query_cli, "bootstrap", lambda: KafkaRuntime(Settings()))

    def then_down(*args: Any) -> list[str]:
        found = differing_current(*args)
        served.process.kill()
        served.process.wait(30)
        return found

    monkeypatch.setattr("okr_ledger.live_rebuild.differing_current", then_down)

    code = run_rebuild()

    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err  # the live row changed: it differs
    assert [n for n in captured.err.splitlines() if not n.startswith("rebuilding ")] == []
    out = " ".join(captured.out.split())  # rich wraps the notes
    assert "the rebuild differs from the live projections" in out
    assert "objective_versions: 1 rows only in the live projections, 1 only in the rebuild" in out
    assert (
        f"the rebuild's database is left on the server, http://{served.host}:{served.port} "
        "database okr_ledger_rebuild_"
    ) in out
    assert "its drop failed ([Errno 111] Connection refused); drop it with `DROP DATABASE" in out


def test_a_failure_of_the_fingerprint_after_a_rebuild_in_place_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Embedded (SQLite ledger, chDB in this process): the store refuses a statement of the
    fingerprint taken after the rebuild (the one before is taken in a process of its own)."""
    data = tmp_path / "data"
    a_ledger(data).close()
    monkeypatch.setenv("OKR_DATA_DIR", str(data))
    monkeypatch.setenv("COLUMNS", "400")
    for name in ("OKR_LEDGER_URL", "OKR_CLICKHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    real = ProjectionStore.rows

    def rows(store: ProjectionStore, query: str, *args: Any, **kwargs: Any) -> Any:
        if "sum(h)" in query and "audit_events" in query:  # a real refusal: the table gone
            store.client.command(f"DROP TABLE IF EXISTS {store.database}.audit_events")
        return real(store, query, *args, **kwargs)

    monkeypatch.setattr(ProjectionStore, "rows", rows)

    code = run_rebuild()

    captured = capsys.readouterr()
    assert code == 1, captured.out + captured.err
    assert "identical" not in captured.out
    assert "differs" not in captured.out
    lines = [n for n in captured.err.splitlines() if not n.startswith("rebuilding ")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(
        "error: the rebuild was cut short, nothing compared: the rebuilt projections "
        f"(chdb://{(data / 'clickhouse').absolute()} database okr_ledger) refused a statement: "
    ), lines[0]
    assert "UNKNOWN_TABLE" in lines[0]
