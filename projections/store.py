"""The projection store: migrations, idempotent batch inserts, checkpoints, read-only queries."""

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from processors import tables as t
from processors.tables import RowBatch
from projections.client import ClickHouseClient, Target, connect, parse_url
from projections.migrations import (
    COLUMN_TYPES,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    SETTINGS_TABLE,
    TIME,
    VIEWS,
)
from projections.readonly_sql import QueryLimits, ReadOnlyGuard, Rows
from schemas.errors import ProjectionError, ProjectionQueryError

Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReadOnlyAnswer:
    """What a read-only statement gave: columns and rows, or, with FORMAT, that format's bytes."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    formatted: bytes | None = None


class ProjectionStore:
    """One database of projections on a ClickHouse server or in chDB."""

    def __init__(self, client: ClickHouseClient, database: str, description: str = "") -> None:
        self.client = client
        self.database = database
        self.description = description or database
        self._migrated = False
        self._guard = ReadOnlyGuard()

    @classmethod
    def open(cls, url: str, database: str | None = None, migrate: bool = True) -> "ProjectionStore":
        """Connect, and apply pending migrations (first use creates everything)."""
        target: Target = parse_url(url, database)
        store = cls(connect(target), target.database, target.describe())
        try:
            if migrate:
                store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "ProjectionStore":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- schema ---------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("{db}", self.database)

    def _run(self, statement: str) -> None:
        try:
            self.client.command(self._sql(statement))
        except Exception as error:
            raise ProjectionError(f"{self.description}: {error}") from error

    def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        self._run("CREATE DATABASE IF NOT EXISTS {db}")
        self.client.database = self.database  # unqualified names in ad-hoc SQL
        self._run(
            f"CREATE TABLE IF NOT EXISTS {{db}}.{MIGRATIONS_TABLE} "
            f"(version UInt32, name String, applied_at {TIME}) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = {version for version, _name, _at in self.applied_migrations()}
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                self._run(statement)
            self.client.insert(
                f"{self.database}.{MIGRATIONS_TABLE}",
                [(migration.version, migration.name, datetime.now(UTC))],
                column_names=["version", "name", "applied_at"],
            )
            applied.append(migration.version)
        self._migrated = True
        return applied

    def applied_migrations(self) -> list[tuple[int, str, datetime]]:
        rows = self.rows(
            f"SELECT version, any(name), min(applied_at) FROM {{db}}.{MIGRATIONS_TABLE} "
            "GROUP BY version ORDER BY version"
        )
        return [(int(v), str(n), _aware(a)) for v, n, a in rows]

    def drop_all(self) -> None:
        """Drop every view and table of the projections (``rebuild`` recreates them)."""
        for view in VIEWS:
            self._run(f"DROP VIEW IF EXISTS {{db}}.{view}")
        for table in (*t.COLUMNS, SETTINGS_TABLE, MIGRATIONS_TABLE):
            self._run(f"DROP TABLE IF EXISTS {{db}}.{table}")
        self._migrated = False

    # --- writing --------------------------------------------------------------------------

    def insert(self, rows: RowBatch) -> None:
        """Insert each table's rows in one go, the checkpoints last.

        If this is cut short, the checkpoints still point before the batch, and projecting it
        again re-inserts rows that collapse with those already there.
        """
        for table, batch in rows.items():
            if batch and table != t.CHECKPOINTS:
                self._insert(table, batch)
        if rows.get(t.CHECKPOINTS):
            self._insert(t.CHECKPOINTS, rows[t.CHECKPOINTS])
        if not gc.isenabled():  # paused by the caller (see processors.projector.collector_paused)
            # The driver leaves reference cycles that hold each insert's data: free them now
            # rather than when collection resumes (only the youngest objects are scanned).
            gc.collect(0)

    def _insert(self, table: str, batch: Sequence[tuple[Any, ...]]) -> None:
        columns = [list(column) for column in zip(*batch, strict=True)]
        for index in _TIME_COLUMNS[table]:  # as ticks: cheaper than the driver's conversion
            columns[index] = [(moment - _EPOCH) // _MICROSECOND for moment in columns[index]]
        for index in _NULLABLE_TIME_COLUMNS[table]:
            columns[index] = [
                None if moment is None else (moment - _EPOCH) // _MICROSECOND
                for moment in columns[index]
            ]
        try:
            self.client.insert(
                f"{self.database}.{table}",
                columns,
                column_names=t.COLUMNS[table],
                column_type_names=_TYPE_NAMES[table],  # else the driver asks the store each time
                column_oriented=True,
            )
        except Exception as error:
            raise ProjectionError(f"insert into {table} failed: {error}") from error

    def positions(self, stream: str = t.LEDGER_STREAM) -> dict[str, int]:
        """The projected position of every org (or of the rejection log, under org '')."""
        rows = self.rows(
            "SELECT org_id, max(position) FROM {db}.checkpoints WHERE stream = {stream:String} "
            "GROUP BY org_id",
            {"stream": stream},
        )
        return {str(org): int(position) for org, position in rows}

    def set_setting(self, name: str, value: str) -> None:
        """Record a setting the views read (e.g. ``over_focus_limit``), if it changed."""
        current = self.rows(
            f"SELECT argMax(value, updated_at) FROM {{db}}.{SETTINGS_TABLE} "
            "WHERE name = {name:String}",
            {"name": name},
        )
        if current and current[0][0] == value:
            return
        self.client.insert(
            f"{self.database}.{SETTINGS_TABLE}",
            [(name, value, datetime.now(UTC))],
            column_names=["name", "value", "updated_at"],
        )

    # --- reading --------------------------------------------------------------------------

    def rows(self, query: str, parameters: Params | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._query(query, parameters).result_rows]

    def dicts(self, query: str, parameters: Params | None = None) -> list[dict[str, Any]]:
        result = self._query(query, parameters)
        names = list(result.column_names)
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def _query(self, query: str, parameters: Params | None, settings: Params | None = None) -> Any:
        try:
            return self.client.query(
                self._sql(query), parameters=parameters or {}, settings=settings
            )
        except Exception as error:
            raise ProjectionQueryError(_first_line(error)) from error

    # --- read-only SQL (``okr-ledger sql``) -----------------------------------------------

    def read_only(self, query: str, limits: QueryLimits) -> ReadOnlyAnswer:
        """Run one statement if :mod:`projections.readonly_sql` accepts it (parsed by this
        engine), with ``readonly = 1`` and ``limits``; else :class:`QueryRefusedError`."""
        settings = self._read_only_settings(limits)

        def run(sql: str) -> Rows:
            return self.client.query(sql, settings=settings).result_rows

        checked = self._guard.check(query, run)
        # As checked: not through _sql(), which would rewrite "{db}" inside the statement.
        try:
            if checked.output_format:
                return ReadOnlyAnswer([], [], self.client.raw_query(checked.sql, settings=settings))
            result = self.client.query(checked.sql, settings=settings)
        except Exception as error:
            raise ProjectionQueryError(_first_line(error)) from error
        return ReadOnlyAnswer(list(result.column_names), [tuple(r) for r in result.result_rows])

    def _read_only_settings(self, limits: QueryLimits) -> Params:
        """``readonly = 1`` and the limits, but for those the server holds read-only itself
        (a server in read-only mode, such as the worker's endpoint, applies its own limits;
        clickhouse-connect refuses to send a setting the server reports read-only)."""
        fixed = self.client.server_settings
        return {
            name: value
            for name, value in limits.settings().items()
            if not (name in fixed and bool(getattr(fixed[name], "readonly", False)))
        }

    def export(self, relation: str, fmt: str) -> bytes:
        """One view or table in a ClickHouse output format (Parquet, CSVWithNames...)."""
        if relation not in (*VIEWS, *t.COLUMNS):  # named in SQL: never a caller's text
            raise ProjectionQueryError(f"{relation!r} is not a view or table of the projections")
        try:
            return self.client.raw_query(self._sql(f"SELECT * FROM {{db}}.{relation}"), fmt=fmt)
        except Exception as error:
            raise ProjectionQueryError(_first_line(error)) from error


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIME_COLUMNS = {
    table: [i for i, (_name, kind) in enumerate(columns) if kind == TIME]
    for table, columns in COLUMN_TYPES.items()
}
"""Per table, the positions of its (non-nullable) DateTime64 columns."""
_TYPE_NAMES = {table: [kind for _name, kind in columns] for table, columns in COLUMN_TYPES.items()}
_NULLABLE_TIME_COLUMNS = {
    table: [i for i, (_name, kind) in enumerate(columns) if kind == f"Nullable({TIME})"]
    for table, columns in COLUMN_TYPES.items()
}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
