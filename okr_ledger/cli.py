"""``okr-ledger``: the command line. Errors are one line on stderr unless ``--debug``.

The query and worker commands live in their own modules, imported only when one of them runs
(or ``--help`` lists them): ``submit`` does not pay for the projection side's imports."""

import atexit
import gc
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from events.chain import ChainReport, ChainVerifier
from events.collector import collector_paused
from events.log import EventLog, require_org
from events.outcomes import Outcome, Rejection
from events.reasons import ReasonCode
from events.stored import export_lines
from okr_ledger import __version__, cli_options, consoles
from okr_ledger.consoles import err, escape, out
from okr_ledger.settings import Settings
from okr_ledger.submissions import Summary, ndjson_lines
from okr_ledger.wiring import bootstrap, open_event_log, open_ledger
from schemas.errors import (
    MissingExtraError,
    OkrLedgerError,
    UnknownEventTypeError,
    UnknownNameError,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REJECTED, EXIT_BROKEN_CHAIN = 0, 1, 2, 3, 4
EXIT_UNKNOWN_NAME = 5
"""An org, subject, unit or period that does not exist (``UnknownNameError``)."""
PROGRESS_MIN_BYTES = 1 << 20

if TYPE_CHECKING:
    from rich.progress import Progress

LAZY_COMMANDS: dict[str, tuple[str, ...]] = {
    "okr_ledger.query_cli": (
        "init",
        "progress",
        "cascade",
        "coverage",
        "history",
        "results",
        "sql",
        "rebuild",
        "export-projections",
    ),
    "okr_ledger.monitor_cli": ("engagement", "trend", "attention", "strategy"),
    "okr_ledger.worker_cli": ("worker",),
    "okr_ledger.http.cli": ("serve", "keys"),
    "okr_ledger.store_cli": ("serve-store",),
}
"""Module -> the commands its ``register(app)`` adds (a test keeps the two lists equal)."""


class _LazyCommands(TyperGroup):
    """The app's commands, with those of :data:`LAZY_COMMANDS` imported on first use."""

    # ``ctx`` is typer's own (vendored) click context, which it does not export under a name.
    def list_commands(self, ctx: Any) -> list[str]:
        lazy = [name for names in LAZY_COMMANDS.values() for name in names]
        return [*super().list_commands(ctx), *(n for n in lazy if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        module = next((m for m, names in LAZY_COMMANDS.items() if cmd_name in names), None)
        if module is None:
            return None
        commands = typer.Typer()
        import_module(module).register(commands)
        loaded = typer.main.get_command(commands)
        if isinstance(loaded, TyperGroup):
            return loaded.get_command(ctx, cmd_name)
        return loaded  # a module of one command


app = typer.Typer(
    name="okr-ledger",
    help="An event-sourced ledger of strategy and OKRs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyCommands,
)

JsonFlag = Annotated[bool, typer.Option("--json", metavar="", help="Machine-readable output.")]
OrgOption = Annotated[
    str | None, typer.Option("--org", metavar=cli_options.ORG, help="Only this org.")
]


def _write_json(document: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(document) + b"\n")


@contextmanager
def _event_log() -> Iterator[EventLog]:
    """The ledger, opened read-only (it may be an auditor's read-only copy)."""
    log = open_event_log(Settings(), create=False, read_only=True)
    try:
        yield log
    finally:
        log.close()


def _version(value: bool) -> None:
    if value:
        out.print(f"okr-ledger {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """An event-sourced ledger of strategy and OKRs (OKR_* variables configure it)."""
    consoles.measure_again()


# --- submit ---------------------------------------------------------------------------


def _open_input(file: str) -> tuple[IO[bytes], int]:
    if file == "-":
        return sys.stdin.buffer, 0
    path = Path(file)
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {file}", param_hint="FILE")
    return path.open("rb"), path.stat().st_size


COLLECT_EVERY = 20_000
"""Outcomes between two runs of the cyclic collector while ``submit`` runs."""


def submit_stream(stream: IO[bytes], size: int, outcomes_to: IO[bytes] | None) -> Summary:
    """Submit every line of ``stream`` to the configured ledger, with a progress bar if large."""
    settings = Settings()
    summary = Summary()
    submitter = bootstrap(settings).submitter()
    progress = _progress() if size >= PROGRESS_MIN_BYTES and err.is_terminal else None
    try:
        on_bytes = None
        if progress is not None:
            progress.start()
            task = progress.add_task("submitting", total=size or None)
            on_bytes = lambda n: progress.advance(task, n)  # noqa: E731
        lines = ndjson_lines(stream, on_bytes, limit=settings.policy.max_bytes)
        # The cyclic collector paused for the whole run, not only for each batch (the ledger's
        # own pause): between batches it would traverse every object the last batch's outcomes
        # hold, a millisecond a batch. Batches make no reference cycles; whatever else does is
        # collected every COLLECT_EVERY outcomes (the young generations: what was made since).
        with collector_paused():
            for n, outcome in enumerate(submitter.submit_many(lines), start=1):
                summary.count(outcome.status, outcome.org_id, outcome.reason_code)
                if outcomes_to is not None:
                    outcomes_to.write(orjson.dumps(outcome.to_json()) + b"\n")
                if not n % COLLECT_EVERY:
                    gc.collect(1)
    finally:
        if progress is not None:
            progress.stop()
        submitter.close()
    return summary


def _progress() -> "Progress":
    """A progress bar on stderr for a large input (rich.progress is imported only then)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def _print_summary(summary: Summary, title: str = "Submitted") -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("[green]accepted", str(summary.accepted))
    table.add_row("[yellow]duplicate", str(summary.duplicate))
    table.add_row("[red]rejected", str(summary.rejected))
    for reason, count in sorted(summary.by_reason.items()):
        table.add_row(f"  [red]{reason}", str(count))
    out.print(table)
    if summary.rejected:
        out.print("See them with: okr-ledger rejections")


@app.command()
def submit(
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="NDJSON file, one submission per line; - for stdin."),
    ],
    json: JsonFlag = False,
    outcomes: Annotated[
        Path | None,
        typer.Option(
            "--outcomes", metavar="FILE", help="Write each submission's outcome (NDJSON)."
        ),
    ] = None,
) -> None:
    """Submit events. Exit 0 when all were accepted or duplicates, 3 when any was rejected."""
    stream, size = _open_input(file)
    outcomes_file = outcomes.open("wb") if outcomes else None
    try:
        summary = submit_stream(stream, size, outcomes_file)
    finally:
        if outcomes_file:
            outcomes_file.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if json:
        _write_json(summary.to_json())
    else:
        _print_summary(summary)
    raise typer.Exit(EXIT_REJECTED if summary.rejected else EXIT_OK)


# --- verify and export ----------------------------------------------------------------


def verify_file(path: Path, org: str | None) -> list[ChainReport]:
    """The same checks on an export file, streamed (orgs may interleave)."""
    verifier = ChainVerifier()
    with path.open("rb") as stream:
        for stored in export_lines(stream):
            verifier.add(stored)
    reports = verifier.reports()
    if org is not None and not any(r.org_id == org for r in reports):
        known = [r.org_id for r in reports if r.org_id is not None]
        if any(r.org_id is None for r in reports):
            return [r for r in reports if r.org_id is None]  # damage that names no org
        raise UnknownNameError("org", org, known)
    return [r for r in reports if org is None or r.org_id in (org, None)]


def _where(report: ChainReport) -> str:
    """``acme: sequence 5 (line 9)``, ``acme: partition 2, offset 17``, ``line 9``."""
    places = [f"sequence {report.first_bad_sequence}"] if report.first_bad_sequence else []
    if report.location:
        places.append(f"({report.location})" if places else report.location)
    where = " ".join(places)
    if report.org_id is None:
        return where
    return f"{escape(report.org_id)}: {where}" if where else escape(report.org_id)


@app.command()
def verify(
    org: OrgOption = None,
    json: JsonFlag = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Verify this export (NDJSON from `export`) instead of the ledger.",
        ),
    ] = None,
) -> None:
    """Check every stored event byte for byte and every org's hash chain. Exit 4 names the
    first bad event."""
    if file is not None:
        reports = verify_file(file, org)
    else:
        with _event_log() as log:
            reports = log.verify(org)
            if org and not any(r.events for r in reports):
                require_org(log, org)
    broken = next((r for r in reports if not r.ok), None)
    if json:
        _write_json(
            {
                "ok": broken is None,
                "org_id": broken.org_id if broken else org,
                "first_bad_sequence": broken.first_bad_sequence if broken else None,
                "location": broken.location if broken else None,
                "problem": broken.problem if broken else None,
                "orgs": [r.to_json() for r in reports],
            }
        )
    else:
        for report in reports:
            if report.ok:
                name = escape(report.org_id or "")
                out.print(f"[green]ok[/] {name}: {report.events} events, chain intact")
            else:
                out.print(f"[red]BROKEN[/] {_where(report)}: {escape(report.problem or '')}")
        if not reports:
            out.print("the ledger is empty" if file is None else "the file has no events")
    raise typer.Exit(EXIT_BROKEN_CHAIN if broken else EXIT_OK)


@app.command()
def export(
    org: OrgOption = None,
    from_seq: Annotated[
        int, typer.Option("--from-seq", metavar="SEQ", min=1, help="First sequence.")
    ] = 1,
    to_seq: Annotated[
        int | None, typer.Option("--to-seq", metavar="SEQ", min=1, help="Last sequence.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="File (default stdout).")
    ] = None,
) -> None:
    """Write ledger events as NDJSON, each line the stored bytes (canonical JSON), in sequence
    order: the auditor's copy."""
    if org is not None:  # before the output file is created
        with _event_log() as log:
            require_org(log, org)
    sink = output.open("wb") if output else sys.stdout.buffer
    count = size = 0
    try:
        with _event_log() as log:
            for stored in log.read_stored(org, from_seq, to_seq):
                sink.write(stored.body + b"\n")
                count += 1
                size += len(stored.body) + 1
    finally:
        if output:
            sink.close()
    if output:  # stdout carries the events: the confirmation goes to stderr
        err.print(
            f"wrote {count} events ({size} bytes) to {output}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # a path broken over lines cannot be copied
        )


@app.command()
def rejections(
    json: JsonFlag = False,
    org: OrgOption = None,
    reason: Annotated[
        ReasonCode | None, typer.Option("--reason", help="Only this reason code.")
    ] = None,
    as_of: cli_options.AsOf = None,
) -> None:
    """List recorded rejections (reason code, message, where the submission came from)."""
    from rich.text import Text

    from okr_ledger import layout

    until = cli_options.parse_option(as_of, "--as-of")
    rows: list[list[layout.Cell]] = []
    with _event_log() as log:
        if org is not None:
            _require_rejecting_org(log, org)
        for rejection in log.rejections():  # streamed: one at a time, never all at once
            if (org is not None and rejection.org_id != org) or (
                reason is not None and rejection.reason != reason
            ):
                continue
            if until is not None and cli_options.parse_time(rejection.recorded_at) > until:
                continue
            if json:
                _write_json(rejection.to_json())
                continue
            rows.append([
                rejection.recorded_at,
                Text(rejection.reason.value, style="red"),
                rejection.org_id or "",
                rejection.type or "",
                str(rejection.line or ""),
                Text.from_markup(_first_detail(rejection) + escape(_truncation(rejection))),
            ])  # fmt: skip
    if not json:
        columns = [
            layout.Column("recorded at", no_wrap=True), layout.Column("reason", no_wrap=True),
            layout.Column("org"), layout.Column("type"), layout.Column("line", justify="right"),
            layout.Column("message"),
        ]  # fmt: skip
        out.print(layout.records(out, "Rejections", columns, rows))
        out.print(f"{len(rows)} rejections")


def _require_rejecting_org(log: EventLog, org: str) -> None:
    """An org is known if the ledger or only the rejection log names it (streamed scan)."""
    if org in log.heads():
        return
    named: set[str] = set()
    for rejection in log.rejections():
        if rejection.org_id == org:
            return
        if rejection.org_id:
            named.add(rejection.org_id)
    require_org(log, org, named)


def _truncation(rejection: Rejection) -> str:
    """For a submission kept only in part: how much of it, and the whole one's SHA-256."""
    if not rejection.truncated:
        return ""
    return (
        f" (kept the first {len(rejection.raw)} of {rejection.raw_length} bytes, "
        f"sha256 {rejection.raw_sha256})"
    )


def _first_detail(rejection: Rejection) -> str:
    """The message and first detail, escaped: they quote submitted text, which is not markup."""
    if rejection.details:
        first = rejection.details[0]
        more = f" (+{len(rejection.details) - 1} more)" if len(rejection.details) > 1 else ""
        return escape(f"{rejection.message}: {first['loc']}: {first['msg']}{more}")
    return escape(rejection.message)


# --- schema and demo ------------------------------------------------------------------


@app.command()
def schema(
    type_name: Annotated[
        str | None, typer.Argument(metavar="[TYPE]", help="An event type; none for all.")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", metavar="N", help="Schema version.")
    ] = None,
    write: Annotated[
        Path | None,
        typer.Option("--write", metavar="DIR", help="Write the whole export into this directory."),
    ] = None,
) -> None:
    """Print the JSON Schema of a submission, or of one event type's data."""
    from schemas.export import payload_schema, render, submission_schema, write_all

    if write is not None:
        for path in write_all(write):
            err.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
        return
    try:
        document = payload_schema(type_name, version) if type_name else submission_schema()
    except UnknownEventTypeError as error:
        raise typer.BadParameter(str(error), param_hint="TYPE") from None
    sys.stdout.buffer.write(render(document))


@app.command()
def demo() -> None:
    """Load the demo organisation (from the seeds) and report what happened. Safe to rerun."""
    from okr_ledger.demo import DEMO_ORG, DEMO_TREND, demo_lines

    summary = Summary()
    outcomes: list[Outcome] = []
    ledger = open_ledger(Settings())
    try:
        for outcome in ledger.submit_many(demo_lines()):
            summary.add(outcome)
            outcomes.append(outcome)
        reports = ledger.log.verify(DEMO_ORG)
    finally:
        ledger.log.close()
    _print_summary(summary, title=f"Demo organisation {DEMO_ORG!r}")
    for rejection in (o for o in outcomes if isinstance(o, Rejection)):
        out.print(
            f"  [red]{rejection.reason.value}[/] line {rejection.line}: {_first_detail(rejection)}"
        )
    for report in reports:
        state = "[green]intact" if report.ok else f"[red]broken at {report.first_bad_sequence}"
        out.print(f"chain of {report.org_id}: {report.events} events, {state}")
    recorded = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    out.print(  # a moment after all of it was recorded: time travel back to it later
        f"time travel: okr-ledger progress --as-of {recorded} (the ledger as it is now)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    try:
        from okr_ledger import query_cli

        query_cli.show_demo_projections(DEMO_ORG)
        from okr_ledger import monitor_cli

        monitor_cli.show_demo_monitoring(DEMO_ORG, DEMO_TREND)
    except MissingExtraError as error:  # a core install has the ledger but no projections
        out.print(f"(no progress tree: {error})", markup=False)


def run() -> NoReturn:
    """The ``okr-ledger`` program: :func:`main`, then the process ends (:func:`_end`)."""
    try:
        main()
    except SystemExit as stop:
        _end(stop.code)
    _end(EXIT_OK)


def _end(code: object) -> NoReturn:
    """End the process with ``code`` without the interpreter's teardown, as mypy's fast exit.

    Freeing every module and running the embedded engine's static destructors cost ~100 ms of
    CPU on each command that opened the store (more in wall time), after everything the
    command opened was closed by its own ``with``/``finally``. What exit must still do is
    done first: the ``atexit`` functions (logging's flush, multiprocessing's children,
    finalizers of temporary files) and the flush of stdout and stderr, whose failure is an
    error (a full disk) as in a normal exit. A thread still running (not a daemon) gets the
    normal exit, which waits for it. Only the program ends so (:func:`run`): :func:`main`
    returns or raises, for callers in a process of their own.
    """
    if code is None:
        code = EXIT_OK
    elif not isinstance(code, int):  # ``sys.exit("message")``: Python prints it, exit 1
        print(code, file=sys.stderr)
        code = EXIT_ERROR
    if any(not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)  # a thread still working: the normal exit waits for it
    atexit._run_exitfuncs()  # what a normal exit runs first
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away: Typer's rule, exit 1 and nothing said
        code = code or EXIT_ERROR
    except (OSError, ValueError) as error:  # a full disk: output lost, which must be said
        with suppress(OSError, ValueError):
            print(f"error: cannot write the output: {error}", file=sys.stderr)
        code = code or EXIT_ERROR
    with suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def main() -> None:
    """Entry point: one clear line on stderr for every error, a traceback only with --debug."""
    debug = "--debug" in sys.argv[1:]
    if debug:  # accepted anywhere on the line, not only before the command
        sys.argv = [sys.argv[0], "--debug", *(a for a in sys.argv[1:] if a != "--debug")]
    # A reader that goes away (``okr-ledger export | head``) is Typer's (click's) to handle:
    # exit 1 and nothing on stderr.
    try:
        app()
    except ValidationError as error:  # only settings are validated outside the sequencer
        if debug:
            raise
        problems = "; ".join(
            f"OKR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors(include_url=False)
        )
        err.print(
            f"[red]error:[/] invalid setting: {escape(problems)}", highlight=False, soft_wrap=True
        )
        sys.exit(EXIT_ERROR)
    except OkrLedgerError as error:
        if debug:
            raise
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_UNKNOWN_NAME if isinstance(error, UnknownNameError) else EXIT_ERROR)
    except Exception as error:
        if debug:
            raise
        err.print(
            f"[red]error:[/] {type(error).__name__}: {escape(str(error))} "
            "(--debug shows the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
