"""Rows as Arrow streams: how the store hands batches to ClickHouse.

pyarrow converts each column in C++ and ClickHouse reads Arrow natively, so a row costs far
less than through the driver's own serialization of Python values (and chDB imports pyarrow
anyway). Rows are converted as soon as they are staged, so what waits to be inserted is
compact bytes, not Python objects; each table's staged batches are then inserted at once:
each insert makes a part, whose fixed cost (~10 ms in chDB) is paid per table per insert.

The Arrow type of each column follows its ClickHouse type in
:data:`projections.migrations.COLUMN_TYPES`; times arrive as integers (microseconds since the
epoch, UTC), as the projector emits them.
"""

import importlib.abc
import os
import re
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type hints

from projections.migrations import COLUMN_TYPES

_TUPLE_FIELD = re.compile(r"(\w+) (\w+)")


def _no_pandas_check() -> None:
    """pyarrow imports pandas (0.2-0.3 s and ~45 MiB here) the first time it converts Python
    values, only to ask whether they are pandas objects; ours never are, and a command that
    projects one event would pay that import. Let that check find no pandas, once (pyarrow
    remembers the answer), without hiding pandas from anyone who imports it later. Nothing in
    this process converts between pyarrow and pandas."""
    if "pandas" in sys.modules:
        return
    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.array([], type=pa.null())
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas(importlib.abc.MetaPathFinder):
    """Refuses to import pandas (while :func:`_no_pandas_check` runs)."""

    @staticmethod
    def find_spec(name: str, *_args: object) -> None:
        if name == "pandas":
            raise ImportError("not imported for pyarrow's check")


_no_pandas_check()


def _reusing_pool() -> None:
    """Allocate Arrow's buffers with the C library's allocator, unless the environment chose
    one (``ARROW_DEFAULT_MEMORY_POOL``). The default (mimalloc) hands the pages of each
    batch's freed buffers back to the kernel, so the next batch faults them in again: on the
    benchmark that doubled the cost of staging (its system time); malloc keeps them for reuse
    (the peak RSS did not grow)."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


_reusing_pool()


def arrow_type(clickhouse: str) -> pa.DataType:
    """The Arrow type ClickHouse reads into a column of type ``clickhouse``."""
    inner = clickhouse
    for wrapper in ("Nullable(", "LowCardinality("):
        if inner.startswith(wrapper):
            inner = inner[len(wrapper) : -1]
    if inner.startswith("Array(Tuple("):
        fields = _TUPLE_FIELD.findall(inner[len("Array(Tuple(") : -2])
        return pa.list_(pa.struct([(name, arrow_type(kind)) for name, kind in fields]))
    if inner.startswith("Array("):
        return pa.list_(arrow_type(inner[len("Array(") : -1]))
    if inner.startswith("DateTime64(6"):
        return pa.timestamp("us", tz="UTC")
    return _SIMPLE[inner]


_SIMPLE = {
    "String": pa.string(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "Date32": pa.date32(),
}


@cache
def arrow_schema(table: str) -> pa.Schema:
    return pa.schema(
        [(name, arrow_type(kind)) for name, kind in COLUMN_TYPES[table]],
    )


class ArrowTables:
    """Rows of several batches, table by table, kept as Arrow record batches (compact columns,
    no Python object per value) until they are inserted in one go per table. Each table's
    batches are written as one Arrow stream only when it is taken (by the commit, in the
    writer's thread: pyarrow writes without the GIL), not as each batch is staged."""

    def __init__(self) -> None:
        self._batches: dict[str, list[pa.RecordBatch]] = {}
        self._bytes: dict[str, int] = {}
        self.rows = 0
        self.bytes = 0

    def add(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        schema = arrow_schema(table)
        arrays = [
            pa.array(values, type=field.type)
            for values, field in zip(zip(*rows, strict=True), schema, strict=True)
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        self._batches.setdefault(table, []).append(batch)
        self._bytes[table] = self._bytes.get(table, 0) + batch.nbytes
        self.rows += len(rows)
        self.bytes += batch.nbytes

    def table_bytes(self, table: str) -> int:
        """What ``table``'s staged rows take (0 if none)."""
        return self._bytes.get(table, 0)

    def tables(self) -> list[str]:
        return list(self._batches)

    def take(self, table: str) -> Iterator[bytes]:
        """The table's Arrow stream (its rows are no longer kept here), in pieces: each batch
        is written, then dropped, as the stream is read, so neither the whole stream nor all
        the batches beside it are in memory at once (clickhouse-connect writes the pieces to
        chDB's input file, or sends them to a server, as they come)."""
        batches = self._batches.pop(table)
        self.bytes -= self._bytes.pop(table, 0)
        self.rows -= sum(batch.num_rows for batch in batches)
        batches.reverse()  # taken from the end, in the order staged
        return _stream(arrow_schema(table), batches)


class _Pieces:
    """A file that keeps what is written to it until taken (:func:`_stream`)."""

    closed = False

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: Any) -> int:
        piece = bytes(data)  # pyarrow may reuse its buffer
        self.pieces.append(piece)
        return len(piece)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def taken(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces


def _stream(schema: pa.Schema, batches: list[pa.RecordBatch]) -> Iterator[bytes]:
    """An Arrow IPC stream of ``batches`` (in reverse order: each is popped, then written),
    one batch's bytes at a time."""
    sink = _Pieces()
    with pa.ipc.new_stream(sink, schema) as writer:
        while batches:
            writer.write_batch(batches.pop())
            yield from sink.taken()
    yield from sink.taken()
