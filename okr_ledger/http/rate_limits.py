"""Requests per key, counted with the ``limits`` library (a moving window in memory).

The counts are per replica and per worker process (``serve --workers``: each process counts
its own): N replicas of ``W`` workers each let a key make up to N x W times its limit in all.
A key over its limit gets 429 with ``Retry-After`` (whole seconds).
"""

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from schemas.errors import ConfigurationError


class RateLimits:
    """``spec`` in the ``limits`` notation (``"100/second; 5000/minute"``); empty: none."""

    def __init__(self, spec: str) -> None:
        try:
            self.items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        except ValueError as error:
            raise ConfigurationError(f"OKR_HTTP_RATE_LIMIT={spec!r}: {error}") from None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, key_id: str) -> int | None:
        """Count one request of ``key_id``; ``None`` if allowed, else seconds to wait."""
        for item in self.items:
            if not self._limiter.hit(item, key_id):
                reset = self._limiter.get_window_stats(item, key_id).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None
