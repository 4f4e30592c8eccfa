"""The suite's order: its longest tests first in each xdist worker's share.

`make test` runs the suite on ``PYTEST_WORKERS`` workers with ``--dist worksteal``, which hands
each worker a contiguous share of the collected tests to begin with. A long test near the end
of a share starts late and runs on alone while the other workers have finished (in one full
run: the workers' summed test time 1,492 s against 1,370 and 1,365 s). So the tests below,
the longest in `make test`'s list of the 20 slowest, are dealt out, longest first, to the start
of each worker's share. The order changes no test; an id that no longer exists is ignored.
The Kafka tests that run several workers are left where they are: they wait on brokers and
processes more than they take a core, and a start beside the longest CPU-bound tests would
only slow their workers down.
"""

import os

import pytest
from hypothesis import settings

# In CI (``CI`` set) the property tests run the same examples every time: a failure there is
# reproducible and is never a different draw than the run before. Elsewhere they draw anew on
# every run, so local runs keep exploring.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

LONGEST_FIRST = (
    "tests/projections/test_properties.py::test_as_of_equals_a_rebuild_of_the_prefix",
    "tests/projections/test_as_of_snapshots.py::test_answers_as_of_every_event_equal_a_rebuild_of_the_prefix[6-11]",
    "tests/projections/test_as_of_snapshots.py::test_the_snapshots_interval_does_not_change_an_answer",
    "tests/projections/test_as_of_snapshots.py::test_answers_as_of_every_event_equal_a_rebuild_of_the_prefix[12-16]",
    "tests/projections/test_as_of_snapshots.py::test_answers_as_of_every_event_equal_a_rebuild_of_the_prefix[17-21]",
    "tests/projections/test_as_of_snapshots.py::test_answers_as_of_every_event_equal_a_rebuild_of_the_prefix[0-5]",
    "tests/projections/test_monitoring.py::test_the_trend_view_rolls_objectives_up_at_each_point",
    "tests/projections/test_at_days.py::test_rows_counted_twice_in_the_days_are_read_from_the_check_ins[unmerged]",
    "tests/projections/test_readonly_sql.py::test_every_escape_is_refused_by_the_sql_command_and_nothing_changes",
    "tests/projections/test_at_days.py::test_rows_counted_twice_in_the_days_are_read_from_the_check_ins[merged]",
    "tests/projections/test_at_days.py::test_the_days_count_as_one_pass_does[inf]",
    "tests/projections/test_at_days.py::test_the_days_count_as_one_pass_does[0.25]",
)  # fmt: skip
"""The longest CPU-bound tests, longest first (from `make test`'s list of the 20 slowest)."""


def _workers() -> int:
    """How many xdist workers share the suite (set in each worker, which collects it)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def worksteal_order(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """``items`` with :data:`LONGEST_FIRST` dealt out, longest first, to the start of each of
    ``workers`` contiguous shares (as ``--dist worksteal`` first splits them), the others in
    their collected order."""
    rank = {nodeid: i for i, nodeid in enumerate(LONGEST_FIRST)}
    longest = sorted((item for item in items if item.nodeid in rank), key=lambda i: rank[i.nodeid])
    rest = [item for item in items if item.nodeid not in rank]
    ordered: list[pytest.Item] = []
    for worker in range(workers):
        share = (len(items) - len(ordered)) // (workers - worker)  # worksteal's split
        dealt = longest[worker::workers]
        ordered += dealt
        taken = max(share - len(dealt), 0) if worker < workers - 1 else len(rest)
        ordered += rest[:taken]
        rest = rest[taken:]
    return ordered


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = worksteal_order(items, _workers())
