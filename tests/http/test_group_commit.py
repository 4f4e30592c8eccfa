"""The HTTP writer's group commit (okr_ledger/http/group_commit.py), on the real embedded
runtime: how it runs a group, seen from the submitter it drives."""

import asyncio
import gc
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from events.ledger import ReadLine
from okr_ledger.http.group_commit import GroupCommitter
from okr_ledger.runtime import Refused, Submitter
from okr_ledger.settings import Settings
from okr_ledger.submit_outcome import SubmitOutcome
from okr_ledger.wiring import bootstrap
from schemas.errors import LedgerUnavailableError
from tests.builders import check_ins, org_setup


class Watched:
    """The runtime's own submitter, noting whether the cyclic collector ran as each outcome
    came."""

    def __init__(self, submitter: Submitter) -> None:
        self.submitter = submitter
        self.collector_on: list[bool] = []

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[SubmitOutcome]:
        for outcome in self.submitter.submit_many(lines):
            self.collector_on.append(gc.isenabled())
            yield outcome

    def refuse(self, refused: Sequence[Refused]) -> list[SubmitOutcome]:
        return self.submitter.refuse(refused)

    def close(self) -> None:
        self.submitter.close()


def test_a_group_is_submitted_with_the_collector_paused_and_it_runs_again_after(
    tmp_path: Path,
) -> None:
    """Between the ledger's batches of one group the collector would traverse every outcome
    the group holds so far: it stays paused for the whole group (every outcome comes while
    it is off), and is on again once the group is answered."""
    runtime = bootstrap(Settings(data_dir=tmp_path))
    watched: list[Watched] = []

    def open_submitter() -> Submitter:
        watched.append(Watched(runtime.submitter()))
        return watched[0]

    committer = GroupCommitter(open_submitter, max_group=5000)
    committer.start()
    lines: list[ReadLine] = [(line, None) for line in [*org_setup(), *check_ins(30)]]

    async def post() -> list[SubmitOutcome]:
        return await committer.submit(lines)

    assert gc.isenabled()
    try:
        outcomes = asyncio.run(post())
    finally:
        committer.close()
    assert [o.status for o in outcomes] == ["accepted"] * len(lines)
    assert watched[0].collector_on == [False] * len(lines)
    deadline = time.monotonic() + 5
    while not gc.isenabled() and time.monotonic() < deadline:  # the writer leaves its group
        time.sleep(0.01)
    assert gc.isenabled()


class Poisoned:
    """The runtime's own submitter, failing any call whose lines hold ``poison`` (a fault
    injected where a bug would be: the group's other requests must not pay for it)."""

    def __init__(self, submitter: Submitter, poison: bytes, error: Exception) -> None:
        self.submitter = submitter
        self.poison = poison
        self.error = error
        self.calls: list[int] = []

    def submit_many(self, lines: Iterable[ReadLine]) -> Iterator[SubmitOutcome]:
        lines = list(lines)
        self.calls.append(len(lines))
        for outcome, (raw, _number) in zip(self.submitter.submit_many(lines), lines, strict=True):
            if raw == self.poison:
                raise self.error
            yield outcome

    def refuse(self, refused: Sequence[Refused]) -> list[SubmitOutcome]:
        return self.submitter.refuse(refused)

    def close(self) -> None:
        self.submitter.close()


def three_requests_in_one_group(
    tmp_path: Path, error: Exception
) -> tuple[list[list[SubmitOutcome] | BaseException], Poisoned, list[list[bytes]]]:
    """Three requests queued before the writer starts (so one group), the second holding a
    submission whose deciding raises ``error``: each request's answer, the submitter."""
    runtime = bootstrap(Settings(data_dir=tmp_path))
    rest = list(check_ins(9))
    requests = [org_setup() + rest[:3], rest[3:6], rest[6:]]
    opened: list[Poisoned] = []

    def open_submitter() -> Submitter:
        opened.append(Poisoned(runtime.submitter(), rest[4], error))
        return opened[0]

    committer = GroupCommitter(open_submitter, max_group=5000)

    async def post() -> list[list[SubmitOutcome] | BaseException]:
        posts = [
            asyncio.ensure_future(committer.submit([(line, None) for line in lines]))
            for lines in requests
        ]
        await asyncio.sleep(0)  # all three queued before the writer starts: one group
        committer.start()
        return await asyncio.gather(*posts, return_exceptions=True)

    try:
        answers = asyncio.run(post())
    finally:
        committer.close()
    assert opened[0].calls[0] == sum(map(len, requests))  # one group
    return answers, opened[0], requests


def test_a_request_that_fails_its_group_fails_alone(tmp_path: Path) -> None:
    """The first and third requests get their outcomes (what the failed group stored comes
    back a duplicate), the second its error."""
    fault = RuntimeError("a fault in deciding one submission")
    (first, second, third), submitter, requests = three_requests_in_one_group(tmp_path, fault)
    assert isinstance(first, list)
    assert [o.status for o in first] == ["accepted"] * len(requests[0])
    assert second is fault
    assert isinstance(third, list)  # stored with the group (one ledger batch): duplicates now
    assert [o.status for o in third] == ["duplicate"] * 3
    assert submitter.calls[1:] == [2, 3]  # the second alone (what it had no answer for), the third


def test_a_failure_of_the_ledger_fails_the_group_at_once(tmp_path: Path) -> None:
    """The ledger unavailable (or locked past its timeout) is no one request's fault: every
    unanswered request of the group is told at once, none submitted again (each would wait
    out the same timeout)."""
    down = LedgerUnavailableError("cannot write to the ledger: database is locked")
    (first, second, third), submitter, requests = three_requests_in_one_group(tmp_path, down)
    assert isinstance(first, list)
    assert [o.status for o in first] == ["accepted"] * len(requests[0])
    assert second is down
    assert third is down
    assert submitter.calls[1:] == []
