"""The per-org hash chain: computing an event's hash, and verifying stored events byte for byte."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from events.canonical import _ORJSON_PLAIN_FLOATS, canonical_bytes, written_canonically_by_orjson
from events.stored import (
    EVENT_KEYS,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    STORED_COLUMNS,
    StoredBytes,
    canonical_problem,
    parse_event,
)
from schemas.envelope import GENESIS_HASH
from schemas.errors import LedgerDamagedError


def event_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 over ``prev_hash`` (ASCII hex) followed by the JCS of the event without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
    digest.update(canonical_bytes(body))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verdict on one org's chain."""

    org_id: str | None
    """None for what names no org: a line of an export that is not an event with an org_id."""
    ok: bool
    events: int
    """Events verified before the first bad one (all of them when ``ok``)."""
    first_bad_sequence: int | None = None
    """None when the bad event's sequence cannot be known (see ``location``)."""
    problem: str | None = None
    head_hash: str = GENESIS_HASH
    location: str | None = None
    """Where the first bad event is stored, where the backend says more than its sequence:
    ``partition 2, offset 17`` on Kafka, ``line 9`` in an export file."""

    def to_json(self) -> dict[str, Any]:
        return {
            "org_id": self.org_id,
            "ok": self.ok,
            "events": self.events,
            "first_bad_sequence": self.first_bad_sequence,
            "problem": self.problem,
            "head_hash": self.head_hash,
            "location": self.location,
        }


def _same(stored: Any, value: Any) -> bool:
    return type(stored) is type(value) and stored == value


@dataclass(slots=True)
class _Chain:
    """One org's progress through :class:`ChainVerifier`."""

    events: int = 0
    head: str = GENESIS_HASH
    broken: ChainReport | None = None


class ChainVerifier:
    """Checks stored events one at a time; orgs may interleave, each org's come in order.

    For each event, in this order (docs/ledger-format.md, section 6): the sequence the backend
    files it under, that its bytes are a well-formed JSON object, that they are byte for byte
    the canonical form of their content, its keys, that the backend's columns agree with it,
    its sequence, its link to the previous event's hash, and its own hash. The first failure
    names the org's first bad event; that org's later events are not looked at. Memory is one
    small record per org, whatever the number of events.
    """

    def __init__(self) -> None:
        self._chains: dict[str | None, _Chain] = {}

    def resume(self, org_id: str, events: int, head: str) -> None:
        """Take ``org_id``'s chain as verified up to its event number ``events``, whose hash is
        ``head``: its next event must be ``events + 1`` and link to ``head``. (A range of a
        chain verified on its own: ``events.verify_ranges``, whose caller checks the claim.)"""
        self._chains[org_id] = _Chain(events, head)

    def add(self, stored: StoredBytes) -> None:
        self.add_examined(examine(stored))

    def add_examined(self, event: "Examined") -> None:
        """:meth:`add` of an event :func:`examine` looked at already."""
        chain = self._chains.setdefault(event.org_id, _Chain())
        if chain.broken is not None:
            return
        expected = chain.events + 1
        problem = event.position_problem(expected) or event.malformed
        if problem is None and event.org_id is None:
            problem = "not an event with an org_id"
        if problem is None and event.parsed:
            problem = event.chain_problem(expected, chain.head)
        if problem is None and event.parsed:
            chain.events, chain.head = expected, event.hash
            return
        chain.broken = ChainReport(
            event.org_id,
            False,
            chain.events,
            expected if event.placed and event.org_id is not None else None,
            problem,
            chain.head,
            event.location,
        )

    def add_rows(self, chunks: Iterable[Sequence[tuple[Any, ...]]]) -> None:
        """:meth:`add` of ``StoredBytes(body, dict(zip(STORED_COLUMNS, columns)))`` for each
        row ``(body, *columns)`` of each chunk (``SqliteEventLog.stored_rows``), with the same
        verdicts, at a fraction of the cost.

        The common event, an intact one after its org's head, is checked inline: each
        condition below is sufficient for what :func:`examine` and :meth:`add_examined` decide
        on it (see :func:`_fast_data`), and anything else (a failed condition, an exception, a
        broken chain, a column of another type) goes to :meth:`add` with the row as it is, so
        the reference path decides and words every problem.
        """
        chains, add, fallback = self._chains, self.add, StoredBytes.from_row
        # Sorted keys, and integers within 53 bits (else an error: the slow path decides).
        loads, dumps, sort = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS | _STRICT_INTEGER
        sha256 = hashlib.sha256
        top_types, top_values, columns = _TOP_TYPES, _TOP_VALUES, _COLUMN_COUNT
        fast_data = _fast_data
        chain, org, events, head = _Chain(), None, 0, GENESIS_HASH  # org's chain, in locals
        for rows in chunks:
            for row in rows:
                body, org_id, sequence, _, _, _, _, hash_ = row
                if org_id != org:
                    chain.events, chain.head = events, head
                    if type(org_id) is not str:  # the body says which org: the slow path
                        add(fallback(row))
                        chain, org = _Chain(), None  # nothing to write back
                        continue
                    chain = chains.setdefault(org_id, _Chain())
                    org, events, head = org_id, chain.events, chain.head
                if chain.broken is not None:
                    continue
                expected = events + 1
                try:
                    if (  # each a case examine() and add_examined() pass (see above)
                        sequence != expected
                        or type(sequence) is not int
                        or len(body) > MAX_EVENT_BYTES
                        or type(record := loads(body)) is not dict
                        or len(record) != _EVENT_KEY_COUNT
                        or tuple(map(type, values := top_values(record))) not in top_types
                        or not fast_data(record["data"], body.isascii())
                        or dumps(record, option=sort) != body
                        or values[:columns] != row[1:]
                        or record["prev_hash"] != head
                    ):
                        raise _SlowPathError
                    # The body without its top-level hash member, the last one (see
                    # _content_checks), hashed after prev_hash; a different member length
                    # (a hash that needs escapes) gives another digest: the slow path.
                    at = body.rfind(b',"hash":"')
                    digest = sha256(head.encode())
                    digest.update(body[:at])
                    digest.update(body[at + 10 + len(hash_) :])
                    if digest.hexdigest() != hash_:
                        raise _SlowPathError
                except Exception:  # the reference path decides, and says why
                    chain.events, chain.head = events, head
                    add(fallback(row))
                    events, head = chain.events, chain.head
                    continue
                events, head = expected, hash_
        chain.events, chain.head = events, head

    def report(self, org_id: str | None) -> ChainReport:
        chain = self._chains.get(org_id) or _Chain()
        return chain.broken or ChainReport(org_id, True, chain.events, head_hash=chain.head)

    def reports(self) -> list[ChainReport]:
        """One report per org seen, by org id (what names no org last)."""
        orgs = sorted(self._chains, key=lambda org: (org is None, org or ""))
        return [self.report(org) for org in orgs]


class Examined(NamedTuple):
    """What one stored event says about itself, whatever its place in its org's chain: the
    checks of :class:`ChainVerifier` that need no other event, and what the others need."""

    org_id: str | None
    location: str | None
    filed_by_sequence: bool
    column_sequence: Any
    """The sequence the backend files it under, if it files it by one."""
    malformed: str | None
    parsed: bool
    placed: bool
    """Its place in its chain is known (see :meth:`ChainVerifier.add_examined`)."""
    problem: str | None = None
    """The first of checks 3 to 5 (canonical, keys, columns) that fails."""
    sequence: Any = None
    prev_hash: Any = None
    hash: Any = None
    intact: bool = False
    """Its hash is the hash of its content (check 8; known once checks 3 to 5 pass)."""

    def position_problem(self, expected: int) -> str | None:
        if self.filed_by_sequence and not _same(self.column_sequence, expected):
            return f"expected sequence {expected}, found {self.column_sequence!r}"
        return None

    def chain_problem(self, expected: int, head: str) -> str | None:
        if self.problem is not None:
            return self.problem
        if not _same(self.sequence, expected):
            return f"expected sequence {expected}, found {self.sequence!r}"
        if self.prev_hash != head:
            return "prev_hash does not link to the previous event's hash"
        return None if self.intact else "content does not match its hash"


def examine(stored: StoredBytes) -> Examined:
    """The checks of one stored event that need no other event (see :class:`Examined`)."""
    try:
        record: dict[str, Any] | None = parse_event(stored.body)
        malformed = None
    except LedgerDamagedError as error:
        record, malformed = None, f"malformed: {error}"
    columns = stored.columns
    filed = "sequence" in columns
    # A malformed event's place is known where the backend files it by sequence (SQLite),
    # or by nothing (a line in a file: it stands at its org's next place); a Kafka record
    # is filed by org alone: its location says where it is.
    placed = record is not None or filed or not columns
    org_id = _org_of(stored, record)
    if record is None:
        return Examined(org_id, stored.location, filed, columns.get("sequence"), malformed, False,
                        placed)  # fmt: skip
    problem, intact = _content_checks(stored, record)
    return Examined(
        org_id,
        stored.location,
        filed,
        columns.get("sequence"),
        malformed,
        True,
        placed,
        problem,
        record.get("sequence"),
        record.get("prev_hash"),
        record.get("hash"),
        intact,
    )


_MAX_INTEGER = 2**53

_EVENT_KEY_COUNT = len(EVENT_KEYS)
_TOP_KEYS = (*STORED_COLUMNS, *sorted(EVENT_KEYS - {"data", *STORED_COLUMNS}))
"""An event's members but ``data``: the stored columns first (``add_rows`` compares them)."""
_OPTIONAL = frozenset({"source_event_id", "correlation_id", "causation_id"})
_NUMBERS = frozenset({"sequence", "schema_version"})


def _top_type_lists() -> frozenset[tuple[type, ...]]:
    """The types of an event's members but ``data`` (in :data:`_TOP_KEYS` order) that the
    fast path of :meth:`ChainVerifier.add_rows` takes: texts str, the optional ids str or
    None, the two numbers int. Each is a case :func:`_plain_event` accepts."""
    lists: set[tuple[type, ...]] = {()}
    for key in _TOP_KEYS:
        kinds = (str, type(None)) if key in _OPTIONAL else (int,) if key in _NUMBERS else (str,)
        lists = {(*done, kind) for done in lists for kind in kinds}
    return frozenset(lists)


_TOP_TYPES = _top_type_lists()
_TOP_VALUES = itemgetter(*_TOP_KEYS)
_COLUMN_COUNT = len(STORED_COLUMNS)
_FAST_LEVELS = MAX_DEPTH // 2
"""How deep ``data`` may nest on the fast path: well within :data:`MAX_DEPTH` (deeper goes to
the slow path, which measures it)."""
_LOW, _HIGH = _ORJSON_PLAIN_FLOATS
_STRICT_INTEGER = orjson.OPT_STRICT_INTEGER
"""orjson refuses an integer beyond ±(2**53 - 1): within :data:`_MAX_INTEGER`, as JCS needs."""


def _fast_data(value: Any, ascii_keys: bool, levels: int = _FAST_LEVELS) -> bool:
    """Whether ``value``, an event's ``data``, is a dict that :func:`written_canonically_by_orjson`
    accepts (its integers' range aside), nested at most ``levels`` deep (so the event is not too
    deep); ``ascii_keys``: the stored bytes are ASCII, so every key is. False is only "not on
    the fast path"."""
    kind = type(value)
    if kind is dict:
        items: Iterable[Any] = value.values()
        if not ascii_keys and not all(key.isascii() for key in value):
            return False
    elif kind is list and levels < _FAST_LEVELS:
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue  # an integer's range: orjson's OPT_STRICT_INTEGER in add_rows
        if kind is float:
            if _LOW <= abs(item) < _HIGH and not item.is_integer():
                continue
            return False
        nested = kind is dict or kind is list
        if nested and levels > 1 and _fast_data(item, ascii_keys, levels - 1):
            continue
        return False
    return True


class _SlowPathError(Exception):
    """A stored row the fast path of :meth:`ChainVerifier.add_rows` leaves to :meth:`add`."""


def _plain_event(record: dict[str, Any]) -> bool:
    """Whether ``record`` has the keys of an event, scalars for all but ``data``, and orjson
    writes it as JCS does (so its canonical form costs one ``orjson.dumps``)."""
    if len(record) != len(EVENT_KEYS) or record.keys() != EVENT_KEYS:
        return False
    for key, value in record.items():
        kind = type(value)
        if kind is str or value is None:
            continue
        if kind is int:
            if -_MAX_INTEGER <= value <= _MAX_INTEGER:
                continue
        elif key == "data" and kind is dict and written_canonically_by_orjson(value):
            continue
        return False
    return True


def _content_checks(stored: StoredBytes, record: dict[str, Any]) -> tuple[str | None, bool]:
    """Checks 3 to 5 (the first failure, if any) and whether the hash is intact (check 8).

    The common case costs one ``orjson.dumps`` and one SHA-256: when orjson writes the event
    as JCS does, the body is canonical if it is what orjson writes, and the hash is taken over
    the stored bytes with the ``hash`` member cut out. Anything else takes the general path.
    """
    if _plain_event(record) and stored.body == orjson.dumps(record, option=orjson.OPT_SORT_KEYS):
        problem = _columns_problem(stored, record)
        if problem is not None:
            return problem, False
        # The body is canonical and its only object member is data, which comes before hash:
        # the last such member is the top-level one, and the body without it is what is hashed.
        body, member = stored.body, b',"hash":' + orjson.dumps(record["hash"])
        at = body.rfind(member)
        try:
            digest = hashlib.sha256(str(record["prev_hash"]).encode("ascii"))
        except UnicodeEncodeError:
            return None, False
        digest.update(body[:at] + body[at + len(member) :])
        return None, digest.hexdigest() == record["hash"]
    problem = (
        canonical_problem(stored.body, record)
        or _keys_problem(record)
        or _columns_problem(stored, record)
    )
    if problem is not None:
        return problem, False
    try:
        return None, event_hash(record) == record["hash"]
    except (UnicodeEncodeError, ValueError, TypeError):
        return None, False


def _keys_problem(record: dict[str, Any]) -> str | None:
    if set(record) != EVENT_KEYS:
        return f"keys {sorted(set(record) ^ EVENT_KEYS)} missing or unexpected"
    return None


def _columns_problem(stored: StoredBytes, record: dict[str, Any]) -> str | None:
    for name, value in stored.columns.items():
        field = record[name]
        if type(field) is not type(value) or field != value:
            return (
                f"the stored {name} column is {value!r} but the event's {name} is {record[name]!r}"
            )
    return None


def _org_of(stored: StoredBytes, record: dict[str, Any] | None) -> str | None:
    """The org an event is filed under, else the one its body names (read leniently when it
    is malformed, only to name it in the report); None if neither says."""
    if stored.org_id is not None:
        return stored.org_id
    if record is None:
        try:
            record = json.loads(stored.body.decode("utf-8", "replace").lstrip("\ufeff"))
        except (ValueError, RecursionError):
            return None
    org_id = record.get("org_id") if isinstance(record, dict) else None
    return org_id if isinstance(org_id, str) else None


def verify_chain(org_id: str, records: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Check one org's already parsed events, in stored order: sequence, links and hashes.

    There are no stored bytes here: each record stands for its canonical form. What a backend
    stores is checked byte for byte by :class:`ChainVerifier` over ``EventLog.read_stored``.
    """
    verifier = ChainVerifier()
    for record in records:
        try:
            body = canonical_bytes(record)
        except (ValueError, TypeError):
            body = b""  # not JSON: malformed
        verifier.add(StoredBytes(body, {"org_id": org_id}))
    return verifier.report(org_id)
