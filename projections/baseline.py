"""Makes ``projections/schema/baseline.sql``: the tables a store migrated one by one holds.

``make schema`` runs it (``python -m projections.baseline``) after a migration is added; a
test checks the committed file against a store migrated one by one.
"""

import sys
import tempfile
from pathlib import Path

from projections.migrations import MIGRATIONS, MIGRATIONS_TABLE
from projections.store import ProjectionStore

PATH = Path(__file__).parent / "schema" / "baseline.sql"
_SOURCE = "baseline_source"
"""The database the file is read from: a name found nowhere else in the SQL."""


def baseline_sql(store: ProjectionStore) -> str:
    """The baseline file for ``store`` (migrated one by one, database :data:`_SOURCE`): its
    tables' statements, each table before the materialized views that read or fill it."""
    rows = store.rows(
        "SELECT name, engine = 'MaterializedView', create_table_query FROM system.tables "
        "WHERE database = {db:String} AND engine != 'View' AND name != {m:String} "
        "ORDER BY engine = 'MaterializedView', name",
        {"db": _SOURCE, "m": MIGRATIONS_TABLE},
    )
    last = MIGRATIONS[-1].version
    lines = [
        f"-- The tables migrations 1-{last} leave, for a new store in one step (projections/",
        "-- migrations.py: BASELINE). Made by `make schema` from a store migrated one by one;",
        "-- a test holds the two equal. Do not edit: add a migration, then run `make schema`.",
    ]
    for _name, view, query in rows:
        kind = "MATERIALIZED VIEW" if view else "TABLE"
        head = f"CREATE {kind} {_SOURCE}."
        if not str(query).startswith(head):
            raise ValueError(f"unexpected statement: {str(query)[:80]}")
        text = f"CREATE {kind} IF NOT EXISTS {{db}}." + str(query).removeprefix(head)
        lines.append(text.replace(f"{_SOURCE}.", "{db}.") + ";")
    return "\n".join(lines) + "\n"


def migrated_one_by_one(directory: Path) -> ProjectionStore:
    """A new chDB store in ``directory``, migrated one migration at a time."""
    store = ProjectionStore.open(f"chdb://{directory}", database=_SOURCE, migrate=False)
    store.migrate(baseline=False)
    return store


def main() -> None:
    with tempfile.TemporaryDirectory() as directory, migrated_one_by_one(Path(directory)) as store:
        PATH.write_text(baseline_sql(store), "utf-8")
    print(f"wrote {PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
