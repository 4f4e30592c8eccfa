"""Snapshots of the projector's state, so that a restart need not replay the whole ledger.

A snapshot is one org's state after ``position``, with the hash of the ledger event at that
position: it is used only if the ledger still has that event there (same ledger) and the
store's checkpoint is at or beyond it. The files are JSON (:mod:`processors.snapshot_codec`),
never code: a snapshot that is unreadable, of another format or org, or inconsistent is
ignored, and the runner replays the ledger instead. Files are named by a digest of the org id,
never by the id itself (any length, any character).
"""

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from processors.snapshot_codec import SNAPSHOT_FORMAT, decode, encode
from processors.state import OrgProjection
from schemas.errors import UnusableSnapshotError

log = logging.getLogger(__name__)

SUFFIX = f".v{SNAPSHOT_FORMAT}.json.gz"


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


def file_name(org_id: str) -> str:
    """The org's snapshot file: a SHA-256 of its id, so no id can make a bad or long name."""
    return hashlib.sha256(org_id.encode()).hexdigest() + SUFFIX


class DirectorySnapshots:
    """One JSON file per org in a directory, replaced atomically. Best effort both ways:
    a snapshot that cannot be read or written is only a longer replay."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, org_id: str) -> Path:
        return self.directory / file_name(org_id)

    def load(self, org_id: str) -> Snapshot | None:
        path = self.path(org_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read the snapshot %s (%s): replaying the ledger", path, error)
            return None
        try:
            found, position, event_hash, state = decode(data)
            if found != org_id:
                raise UnusableSnapshotError(f"it is of another org ({found!r})")
        except UnusableSnapshotError as error:
            log.warning("ignoring the snapshot %s: %s; replaying the ledger", path, error)
            return None
        except Exception:  # a cache: whatever goes wrong reading it, replaying is correct
            log.exception("cannot decode the snapshot %s: replaying the ledger", path)
            return None
        return Snapshot(org_id, position, event_hash, state)

    def save(self, snapshot: Snapshot) -> None:
        path = self.path(snapshot.org_id)
        data = encode(snapshot.org_id, snapshot.position, snapshot.event_hash, snapshot.state)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=self.directory, suffix=".partial")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(partial, path)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        except OSError as error:
            log.warning("cannot write the snapshot %s: %s", path, error)
