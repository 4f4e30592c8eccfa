"""The projector pauses Python's cyclic garbage collector only for a batch, and only if it ran."""

import gc
import threading

from events.collector import collector_paused


def test_the_collector_runs_again_after_the_block() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_runs_again_after_an_error() -> None:
    try:
        with collector_paused():
            raise ValueError
    except ValueError:
        pass
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pauses_overlapping_in_two_threads_end_with_the_last() -> None:
    """The HTTP writer's group and a read's catch-up pause it in threads of their own: the
    first to end does not start it under the other."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        first_in.wait(10)
        with collector_paused():
            second_in.set()
            first_out.wait(10)
            seen.append(gc.isenabled())

    thread = threading.Thread(target=second)
    thread.start()
    with collector_paused():
        first_in.set()
        second_in.wait(10)
    first_out.set()
    thread.join(10)
    assert seen == [False]  # still paused after the first block ended
    assert gc.isenabled()
