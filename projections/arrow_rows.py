"""Rows as an Arrow stream: how the store hands a batch to ClickHouse.

pyarrow converts each column in C++ and ClickHouse reads Arrow natively, so a row costs far
less than through the driver's own serialization of Python values. (chDB imports pyarrow
anyway.) The Arrow type of each column follows its ClickHouse type in
:data:`projections.migrations.COLUMN_TYPES`; times arrive as integers (microseconds since the
epoch, UTC), as the projector emits them.
"""

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import pyarrow as pa

from processors import tables as t
from projections.migrations import COLUMN_TYPES

_TUPLE_FIELD = re.compile(r"(\w+) (\w+)")


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


def arrow_stream(table: str, rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``rows`` of ``table`` (in :data:`processors.tables.COLUMNS` order) as Arrow IPC bytes."""
    schema = arrow_schema(table)
    columns = zip(*rows, strict=True) if rows else ([] for _ in t.COLUMNS[table])
    arrays = [
        pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)
    ]
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()
