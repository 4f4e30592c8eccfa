"""What the read-only SQL tests compare before and after the escape attempts."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from okr_ledger.projection_compare import Fingerprint, fingerprint
from projections.store import ProjectionStore


@dataclass(frozen=True)
class DataState:
    """The projections' fingerprint, the ledger's bytes and the data directory's file names."""

    projections: Fingerprint
    tables: list[tuple[str, str]]
    ledger_sha256: str
    files: frozenset[str]


def data_state(data_dir: Path, store: ProjectionStore) -> DataState:
    tables = store.rows(
        "SELECT database, name FROM system.tables WHERE database NOT IN "
        "('system', 'INFORMATION_SCHEMA', 'information_schema') ORDER BY database, name"
    )
    return DataState(
        projections=fingerprint(store),
        tables=[(str(d), str(n)) for d, n in tables],
        ledger_sha256=hashlib.sha256((data_dir / "ledger.db").read_bytes()).hexdigest(),
        files=frozenset(
            str(p.relative_to(data_dir))
            for p in data_dir.rglob("*")
            if p.is_file() and "clickhouse" not in p.relative_to(data_dir).parts[:1]
        ),
    )


def sql_of(escape: str, data_dir: Path) -> str:
    return escape.replace("{data}", str(data_dir))
