"""Wall time of a benchmark script's phases, printed as one ``phases:`` line."""

import time


class Phases:
    """Each phase is marked when it ends; the next one begins then."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._spans: list[tuple[str, float]] = []

    def done(self, phase: str) -> None:
        """``phase`` ends now."""
        now = time.monotonic()
        self._spans.append((phase, now - self._last))
        self._last = now

    def line(self) -> str:
        """``phases: <phase> <seconds> s; ...`` in the order they ended."""
        return "phases: " + "; ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self._spans)
