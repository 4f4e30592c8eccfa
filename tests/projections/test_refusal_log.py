"""projections.http_bounds.RefusalLog: events counted by reason, one WARNING line at most
every interval (the first at once) with the counts since the last line and the totals."""

import logging
import threading

import pytest

from projections.http_bounds import RefusalLog

LOGGER = "tests.refusal_log"


class Clock:
    """A clock the test moves (the log's interval without waiting for it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(since_last: dict[str, int], total: dict[str, int]) -> str:
    """The counts since the last line, then the totals: ``a b / a b``."""
    return f"{since_last['a']} {since_last['b']} / {total['a']} {total['b']}"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


def test_the_first_event_logs_at_once_and_later_ones_in_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RefusalLog(("a", "b"), line, logging.getLogger(LOGGER), every=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        refusals.note("a")
        assert warnings(caplog) == [line({"a": 1, "b": 0}, {"a": 1, "b": 0})]
        clock.now += 30
        refusals.note("b")
        refusals.note("b")
        clock.now += 29.9
        refusals.note("a")
        assert len(warnings(caplog)) == 1  # within the interval: counted, not logged
        clock.now += 0.1  # 60 s after the first line
        refusals.note("b")
        assert warnings(caplog)[1:] == [line({"a": 1, "b": 3}, {"a": 2, "b": 3})]
        clock.now += 61
        refusals.note("a")
        assert warnings(caplog)[2:] == [line({"a": 1, "b": 0}, {"a": 3, "b": 3})]
    assert refusals.total == {"a": 3, "b": 3}


def test_events_from_many_threads_are_all_counted_in_the_totals_and_the_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    refusals = RefusalLog(("a", "b"), line, logging.getLogger(LOGGER), every=60.0, clock=clock)

    def note(reason: str) -> None:
        for _ in range(5000):
            refusals.note(reason)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        threads = [threading.Thread(target=note, args=(r,)) for r in ("a", "b", "a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert refusals.total == {"a": 10000, "b": 10000}
        assert len(warnings(caplog)) == 1
        clock.now += 60
        refusals.note("a")
    first, second = warnings(caplog)
    assert first in ("1 0 / 1 0", "0 1 / 0 1")  # the first event, at once
    # each event in exactly one line: the first one's or the next
    assert second == ("10000 10000" if first == "1 0 / 1 0" else "10001 9999") + " / 10001 10000"
