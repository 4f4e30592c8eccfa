"""Reading a request body with a bound: never more than the limit in memory."""

import hashlib

from starlette.requests import Request

from events.outcomes import RAW_LIMIT, Oversized

DRAIN_FACTOR = 16
"""A body over its limit is read on (hashed, not kept) up to this many times the limit, so
its rejection can record its length and SHA-256; past that the figures are of what was read."""


async def read_body(request: Request, limit: int) -> bytes | Oversized:
    """The body if it has at most ``limit`` bytes; else its first 64 KiB, length and SHA-256."""
    kept: list[bytes] = []
    size = 0
    hasher: hashlib._Hash | None = None
    prefix = b""
    async for chunk in request.stream():
        size += len(chunk)
        if hasher is None:
            kept.append(chunk)
            if size <= limit:
                continue
            whole = b"".join(kept)
            prefix, hasher = whole[:RAW_LIMIT], hashlib.sha256(whole)
            kept = []
        else:
            hasher.update(chunk)
        if size > limit * DRAIN_FACTOR:
            break
    if hasher is None:
        return b"".join(kept)
    return Oversized(prefix, size, hasher.hexdigest())
