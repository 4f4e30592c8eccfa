"""The two :class:`~okr_ledger.http.keys.KeyStore` adapters, one per runtime.

- **SQLite** (embedded): a ``keys`` table in ``<data dir>/keys.db`` (beside the ledger, not in
  it: the ledger file is the audited record). Every lookup reads the table, so a revocation
  by ``okr-ledger keys revoke`` counts from the next request of every server on that file.
- **Kafka**: a compacted topic (``OKR_KAFKA_TOPIC_KEYS``, one partition, created by
  ``okr-ledger init``), keyed by key id, each value the key's whole record. Every server
  replica reads it from the beginning on start and follows it in a thread, every
  ``OKR_HTTP_KEY_REFRESH_SECONDS``: a revocation reaches every replica within about that
  (plus one fetch). Records are parsed with bounds; a malformed one is ignored and logged.
  Once a key is revoked, later records for its id cannot make it active again.
"""

import logging
import os
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from events.sqlite_connection import connect_wal
from okr_ledger.http.keys import MAX_KEY_RECORD_BYTES, KeyRecord
from schemas.errors import LedgerUnavailableError, UnknownNameError

log = logging.getLogger(__name__)

KEYS_FILE = "keys.db"


def _revoked(record: KeyRecord, at: datetime) -> KeyRecord:
    return record if record.revoked_at else record.model_copy(update={"revoked_at": at})


def decode_record(value: bytes | None) -> KeyRecord | None:
    """A stored key record, validated; ``None`` when it is not one ``keys create`` wrote."""
    if value is None or len(value) > MAX_KEY_RECORD_BYTES:
        return None
    try:
        return KeyRecord.model_validate_json(value)
    except ValidationError:
        return None


def encode_record(record: KeyRecord) -> bytes:
    return record.model_dump_json().encode()


class SqliteKeyStore:
    """Keys in a SQLite file (embedded runtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._parsed: dict[bytes, KeyRecord | None] = {}
        """Stored bytes -> record: each distinct record is validated once."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not path.exists()
            self._db = connect_wal(path, durable=True)
            if fresh:
                os.chmod(path, 0o600)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, record BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as error:
            raise LedgerUnavailableError(f"cannot open the key store {path}: {error}") from error

    def add(self, record: KeyRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO keys (key_id, record) VALUES (?, ?)",
                (record.key_id, encode_record(record)),
            )

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                record = self._find(key_id)
                if record is None:
                    raise UnknownNameError("key", key_id, [r.key_id for r in self._all()])
                record = _revoked(record, at)
                self._db.execute(
                    "UPDATE keys SET record = ? WHERE key_id = ?", (encode_record(record), key_id)
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return record

    def records(self) -> list[KeyRecord]:
        with self._lock:
            return sorted(self._all(), key=lambda r: r.created_at)

    def find(self, key_id: str) -> KeyRecord | None:
        with self._lock:
            return self._find(key_id)

    def _find(self, key_id: str) -> KeyRecord | None:
        row = self._db.execute("SELECT record FROM keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        value = bytes(row[0])
        if value not in self._parsed:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[value] = decode_record(value)
        return self._parsed[value]

    def _all(self) -> list[KeyRecord]:
        rows = self._db.execute("SELECT record FROM keys").fetchall()
        return [r for (value,) in rows if (r := decode_record(bytes(value))) is not None]

    def close(self) -> None:
        self._db.close()


class KafkaKeyStore:
    """Keys in a compacted Kafka topic (Kafka runtime); see the module docstring."""

    def __init__(
        self,
        servers: tuple[str, ...],
        topic: str,
        *,
        follow: bool = False,
        refresh_s: float = 0.5,
        timeout_s: float = 15.0,
    ) -> None:
        from events.kafka_client import Connection, Reader

        self.topic, self.refresh_s = topic, refresh_s
        self._connection = Connection(servers, "okr-keys", timeout_s)
        self._reader = Reader(self._connection)
        self._records: dict[str, KeyRecord] = {}
        self._position: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        try:
            if topic not in self._reader.topics():
                raise LedgerUnavailableError(
                    f"Kafka at {','.join(servers)} has no topic {topic}: run `okr-ledger init`"
                )
            self.refresh()
        except BaseException:
            self._reader.close()
            raise
        if follow:
            self._thread = threading.Thread(target=self._follow, name="okr-keys", daemon=True)
            self._thread.start()

    def refresh(self) -> None:
        """Read the records written since the last read."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        for record in self._reader.read(self.topic, {0: self._position}):
            found = decode_record(record.value)
            if found is None or (record.key or b"") != found.key_id.encode():
                log.warning("%s offset %s: not a key record, ignored", self.topic, record.offset)
                continue
            known = self._records.get(found.key_id)
            if known is not None and known.revoked_at is not None:
                continue  # a revoked key stays revoked
            self._records[found.key_id] = found
        self._position = self._reader.positions.get(0, self._position)

    def _follow(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except LedgerUnavailableError as error:
                log.warning("cannot read the keys (%s); keeping the ones known", error)

    def _write(self, record: KeyRecord) -> None:
        from events.kafka_client import OutRecord, Producer

        producer = Producer(self._connection)
        try:
            key = record.key_id.encode()
            producer.send_all([OutRecord(self.topic, 0, key, encode_record(record))])
        finally:
            producer.close()

    def add(self, record: KeyRecord) -> None:
        self._write(record)
        self._records[record.key_id] = record

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        self.refresh()
        record = self._records.get(key_id)
        if record is None:
            raise UnknownNameError("key", key_id, list(self._records))
        record = _revoked(record, at)
        self._write(record)
        self._records[key_id] = record
        return record

    def records(self) -> list[KeyRecord]:
        if self._thread is None:
            self.refresh()
        return sorted(self._records.values(), key=lambda r: r.created_at)

    def find(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._connection.timeout_s)
        self._reader.close()
