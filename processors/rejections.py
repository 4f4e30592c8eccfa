"""Rows of the rejection log: what was refused, why, and which bytes (bounded)."""

from collections.abc import Sequence

import orjson

from events.outcomes import Rejection
from processors import tables as t
from processors.projector import micros
from processors.tables import RowBatch


def project_rejections(rejections: Sequence[tuple[int, Rejection]], *, lane: str) -> RowBatch:
    """Rows for rejections of one ``lane`` of the rejection log, each with its position (its
    place in the log, unique across lanes), and the lane's checkpoint.

    Rejections are not ledger events: they have no sequence, only their order in the log.
    """
    rows: RowBatch = {t.REJECTIONS: [], t.CHECKPOINTS: []}
    for position, r in rejections:
        rows[t.REJECTIONS].append(
            (
                position,
                micros(r.recorded_at),
                r.reason.value,
                r.message,
                orjson.dumps(r.details).decode(),
                r.org_id,
                r.event_id,
                r.type,
                r.source,
                r.line,
                r.raw.decode("utf-8", errors="replace"),
                r.raw_length,
                r.raw_sha256,
            )
        )
    if rejections:
        last, newest = rejections[-1]
        rows[t.CHECKPOINTS].append((t.REJECTION_STREAM, lane, last, micros(newest.recorded_at)))
    return rows
