"""Snapshots of the projector's state, so that a restart need not replay the whole ledger.

A snapshot is one org's state after ``position``, with the hash of the ledger event at that
position: it is used only if the ledger still has that event there (same ledger) and the
store's checkpoint is at or beyond it. The files are pickles written by this process into
the data directory; a snapshot that cannot be read is ignored (the runner replays instead).
"""

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from processors.state import OrgProjection

SNAPSHOT_FORMAT = 2
"""Raise it whenever the state's shape or the projector's rules change: old files are ignored."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    org_id: str
    position: int
    event_hash: str
    """The ``hash`` of the org's ledger event at ``position``."""
    state: OrgProjection


class SnapshotStore(Protocol):
    def load(self, org_id: str) -> Snapshot | None: ...

    def save(self, snapshot: Snapshot) -> None: ...


class DirectorySnapshots:
    """One pickle per org in a directory, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, org_id: str) -> Path:
        return self.directory / f"{quote(org_id, safe='')}.snapshot"

    def load(self, org_id: str) -> Snapshot | None:
        try:
            with self._path(org_id).open("rb") as file:
                version, snapshot = pickle.load(file)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            return None
        if version != SNAPSHOT_FORMAT or not isinstance(snapshot, Snapshot):
            return None
        return snapshot if snapshot.org_id == org_id else None

    def save(self, snapshot: Snapshot) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(snapshot.org_id)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as file:
            pickle.dump((SNAPSHOT_FORMAT, snapshot), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, path)
