"""The query commands: progress, cascade, coverage, history, sql, rebuild, export, init.

Each one first catches the projections up with the ledger (the embedded runner), so what was
just submitted is in the answer. On Kafka the worker projects: they read its projections.
"""

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from okr_ledger import cli_options, query_json
from okr_ledger import progress_render as render
from okr_ledger.consoles import err, out
from okr_ledger.served_store import token_path
from okr_ledger.settings import Settings
from okr_ledger.wiring import bootstrap, open_projection_store
from projections import queries
from projections.client import parse_url
from projections.migrations import VIEWS
from projections.queries import Moment
from projections.query_credentials import ensure_token
from projections.store import ProjectionStore

PROGRESS_BAR_MIN_EVENTS = 5_000

Advance = Callable[[int], None]
JsonFlag = cli_options.Json
OrgOption = cli_options.Org
AsOfOption = cli_options.AsOf
AtOption = cli_options.At


class ExportFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


def parse_moment(text: str | None, option: str) -> datetime | None:
    """:func:`okr_ledger.cli_options.parse_option`: a usage error names the option."""
    return cli_options.parse_option(text, option)


def _write_lines(lines: Iterable[dict[str, Any]]) -> None:
    for line in lines:
        sys.stdout.buffer.write(query_json.encode_line(line))


@contextmanager
def progress_bar(description: str, total: int, rebuild: bool = False) -> Iterator[Advance]:
    """A bar on stderr, yielding ``advance(n)``: always shown and kept for a rebuild, else
    only for a long catch-up on a terminal, and removed when done."""
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not rebuild and (total < PROGRESS_BAR_MIN_EVENTS or not err.is_terminal),
        transient=not rebuild,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def caught_up_store() -> AbstractContextManager[ProjectionStore]:
    """The projection store, as up to date as the runtime makes it; closed afterwards."""
    return bootstrap().projections(progress_bar)


def _orgs(store: ProjectionStore, org: str | None) -> list[str]:
    """The orgs a command answers about: ``--org`` (which must exist), else all."""
    if org is None:
        return queries.org_ids(store)
    queries.require_org(store, org)
    return [org]


def _moment(as_of: str | None, at: str | None = None) -> Moment:
    return Moment(as_of=parse_moment(as_of, "--as-of"), at=parse_moment(at, "--at"))


def _title(moment: Moment) -> str:
    parts = []
    if moment.as_of:
        parts.append(f"as recorded by {moment.as_of:%Y-%m-%d %H:%M:%S}Z")
    if moment.at:
        parts.append(f"at {moment.at:%Y-%m-%d %H:%M:%S}Z")
    return ", ".join(parts) or f"now ({moment.now:%Y-%m-%d %H:%M}Z)"


def show_progress(
    store: ProjectionStore,
    settings: Settings,
    orgs: list[str],
    moment: Moment,
    *,
    period: str | None = None,
    unit: str | None = None,
    json: bool = False,
) -> None:
    for org_id in orgs:
        found = query_json.progress(
            store, org_id, moment, settings.over_focus_limit, period=period, unit=unit
        )
        if json:
            _write_lines(query_json.progress_lines(org_id, found))
        else:
            out.print(render.progress_tree(org_id, found, _title(moment)))


def show_warnings(store: ProjectionStore, settings: Settings, orgs: list[str]) -> None:
    moment = Moment()
    for org_id in orgs:
        objectives = queries.objectives(store, org_id, moment, settings.over_focus_limit)
        coverage = queries.coverage(store, org_id, moment)
        out.print(render.warnings_view(objectives, coverage))


def progress(  # noqa: PLR0917 - a command's options
    org: OrgOption = None,
    period: cli_options.Period = None,
    unit: cli_options.Unit = None,
    as_of: AsOfOption = None,
    at: AtOption = None,
    json: JsonFlag = False,
) -> None:
    """The cascade as a tree: progress, status and confidence of objectives and key results."""
    moment = _moment(as_of, at)
    with caught_up_store() as store:
        orgs = _orgs(store, org)
        if period is not None:
            queries.require_entity(store, "period", period, orgs)
        if unit is not None:
            queries.require_entity(store, "unit", unit, orgs)
        show_progress(store, Settings(), orgs, moment, period=period, unit=unit, json=json)


def cascade(
    org: OrgOption = None, as_of: AsOfOption = None, at: AtOption = None, json: JsonFlag = False
) -> None:
    """Alignment: parents, themes reached, links, flags (orphan, parent_inactive...), status."""
    moment = _moment(as_of, at)
    settings = Settings()
    with caught_up_store() as store:
        for org_id in _orgs(store, org):
            objectives = queries.cascade(store, org_id, moment, settings.over_focus_limit)
            if json:
                _write_lines(query_json.cascade_lines(org_id, objectives))
            else:
                coverage = queries.coverage(store, org_id, moment)
                out.print(render.cascade_view(org_id, objectives, coverage, out))


def coverage(
    org: OrgOption = None, as_of: AsOfOption = None, at: AtOption = None, json: JsonFlag = False
) -> None:
    """Per period and active theme: objectives, key results and progress (zero shows gaps)."""
    moment = _moment(as_of, at)
    with caught_up_store() as store:
        for org_id in _orgs(store, org):
            rows = query_json.coverage_lines(store, org_id, moment)
            if json:
                _write_lines(rows)
            else:
                out.print(render.coverage_table(org_id, rows))


def history(
    subject: Annotated[
        str, typer.Argument(metavar=cli_options.SUBJECT, help="An objective, key result... id.")
    ],
    org: OrgOption = None,
    as_of: AsOfOption = None,
    json: JsonFlag = False,
) -> None:
    """The audit trail of one objective or key result: every event about it or naming it."""
    moment = _moment(as_of)
    with caught_up_store() as store:
        found = query_json.history_lines(store, _orgs(store, org), subject, moment)
    for org_id, events in found.items():
        if json:
            _write_lines(events)
        elif events:
            out.print(render.history_table(f"{subject} in {org_id}", events, out))
        elif org:
            out.print(f"no events about {subject!r} in {org_id}")


def results(
    period: cli_options.Period = None,
    org: OrgOption = None,
    as_of: AsOfOption = None,
    json: JsonFlag = False,
) -> None:
    """Grades of closed periods (of --period only, else every closed one): each objective's
    and key result's value, progress, attainment, status and confidence as of the period's
    latest close."""
    from okr_ledger.results_render import results_view

    moment = _moment(as_of)
    with caught_up_store() as store:
        orgs = _orgs(store, org)
        if period is not None:
            queries.require_entity(store, "period", period, orgs)
        for org_id in orgs:
            rows = query_json.results_lines(store, org_id, moment, period)
            if json:
                _write_lines(rows)
            else:
                out.print(results_view(out, org_id, rows))


def sql(
    query: Annotated[
        str, typer.Argument(help="One read-only statement (SELECT, SHOW, DESCRIBE, EXISTS...).")
    ],
    json: JsonFlag = False,
) -> None:
    """Run one read-only statement on the projections (their tables and views).

    ClickHouse parses it and an allow-list checks it: SELECT (WITH, UNION), SHOW TABLES,
    DESCRIBE, EXISTS, EXPLAIN; no INTO OUTFILE, SETTINGS, file or network table functions.
    It runs with readonly=1 and OKR_QUERY_MAX_SECONDS / OKR_QUERY_MAX_MEMORY_BYTES. With a
    FORMAT clause, that format's output is written as it is.
    """
    with caught_up_store() as store:
        answer = store.read_only(query, Settings().query_limits)
    if answer.formatted is not None:
        sys.stdout.buffer.write(answer.formatted)
    elif json:
        _write_lines(dict(zip(answer.columns, row, strict=True)) for row in answer.rows)
    else:
        table = Table(*answer.columns)
        for row in answer.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        out.print(table)
        err.print(f"{len(answer.rows)} rows")


def rebuild(
    keep: Annotated[
        bool, typer.Option("--keep", help="Kafka: keep the fresh database of the rebuild.")
    ] = False,
) -> None:
    """Rebuild the projections from the ledger and compare with what is there.

    Embedded: drop them and rebuild in place. Kafka: beside the running worker, in a fresh
    database (a temporary chDB path, or a new database on the ClickHouse server); an
    embedded store no worker serves or holds, in place.
    """
    report = bootstrap().rebuild(keep, lambda label, total: progress_bar(label, total, True))
    for note in report.notes:
        out.print(note)
    out.print(report.summary)
    if not report.compared:
        return
    if report.differences:
        out.print(f"[red]the rebuild differs from {report.baseline}[/]:")
        for line in report.differences:
            out.print(f"  {line}", highlight=False)
        raise typer.Exit(1)
    out.print(f"[green]identical[/]: the rebuild equals {report.baseline}")


def export_projections(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where to write one file per view.")
    ],
    format: Annotated[ExportFormat, typer.Option("--format", help="File format.")] = (
        ExportFormat.PARQUET
    ),
    as_of: AsOfOption = None,
    at: AtOption = None,
) -> None:
    """Write every view (progress, cascade, coverage, history...) as Parquet or CSV files;
    with --as-of / --at, each as of that moment (its parameterized view, ``<view>_at``)."""
    moment = _moment(as_of, at)
    clickhouse_format = "Parquet" if format is ExportFormat.PARQUET else "CSVWithNames"
    directory.mkdir(parents=True, exist_ok=True)
    with caught_up_store() as store:
        for view in VIEWS:
            path = directory / f"{view}.{format.value}"
            if moment.as_of is None and moment.at is None:
                path.write_bytes(store.export(view, clickhouse_format))
            else:
                path.write_bytes(
                    store.export_at(view, clickhouse_format, as_of=moment.as_of, at=moment.at)
                )
            err.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def init() -> None:
    """Create the ledger (Kafka topics) and the projection store with its migrations. Rerunnable."""
    settings = Settings()
    out.print(bootstrap(settings).init_ledger(), markup=False, soft_wrap=True)
    store = open_projection_store(settings, migrate=False)
    try:
        applied = store.migrate()
        recorded = store.applied_migrations()
    finally:
        store.close()
    out.print(f"projection store: {store.description}", markup=False, soft_wrap=True)
    for version, name, applied_at in recorded:
        state = "applied now" if version in applied else f"applied {applied_at:%Y-%m-%d %H:%M}Z"
        out.print(f"  migration {version}: {name} ({state})")
    if parse_url(settings.resolved_clickhouse_url).embedded:  # the worker's endpoint serves it
        ensure_token(token_path(settings))
        out.print(
            f"query token: {token_path(settings)} (readable by its owner only)",
            markup=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    """Add the query commands to the ``okr-ledger`` app."""
    app.command()(init)
    app.command()(progress)
    app.command()(cascade)
    app.command()(coverage)
    app.command()(history)
    app.command()(results)
    app.command()(sql)
    app.command()(rebuild)
    app.command("export-projections")(export_projections)


def show_demo_projections(org_id: str) -> None:
    """The end of ``demo``: the org's progress tree, its alignment warnings and the grades of
    its closed periods."""
    from okr_ledger.results_render import results_view

    settings = Settings()
    with caught_up_store() as store:
        show_progress(store, settings, [org_id], Moment())
        show_warnings(store, settings, [org_id])
        out.print(results_view(out, org_id, query_json.results_lines(store, org_id, Moment())))
