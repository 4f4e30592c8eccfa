"""POST /v1/submissions from many clients at once, and a SIGKILL of ``serve`` among them.

The group-commit writer (okr_ledger/http/group_commit.py) decides concurrent requests'
submissions together, in groups of at most ``OKR_HTTP_GROUP_MAX`` cut into ledger batches of
``OKR_SUBMIT_BATCH_SIZE``: small here (7 and 3), so groups hold several requests and a
request spans several ledger batches (a request is never split between groups). Each answer
must be that request's own (its lines' outcomes, in its line order), and the ledger must hold
exactly what was acknowledged.
"""

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.http.conftest import Served, serving_the_demo
from tests.http.support import Server, check_in, ndjson, outcome_lines, running

NDJSON = {"Content-Type": "application/x-ndjson"}
GROUP_METRIC = "okr_http_group_commit_size"
GROUPS = {"OKR_HTTP_GROUP_MAX": "7", "OKR_SUBMIT_BATCH_SIZE": "3"}
BATCH_THREADS, SINGLE_THREADS = 6, 2
"""Clients posting NDJSON batches of 5 lines, and clients posting one JSON submission."""


@dataclass(frozen=True)
class Line:
    raw: bytes
    source_event_id: str
    kind: str
    """``ok`` (accepted or duplicate), ``forbidden`` or ``unknown_reference``."""


@dataclass(frozen=True)
class Post:
    client: int
    lines: tuple[Line, ...]
    batch: bool

    @property
    def body(self) -> bytes:
        return ndjson([line.raw for line in self.lines]) if self.batch else self.lines[0].raw


def _ok(sid: str, value: float) -> Line:
    return Line(orjson.dumps(check_in(value=value, source_event_id=sid)), sid, "ok")


def _forbidden(sid: str) -> Line:
    return Line(orjson.dumps(check_in(source="crm", source_event_id=sid)), sid, "forbidden")


def _unknown(sid: str) -> Line:
    raw = orjson.dumps(check_in("nope", source_event_id=sid))
    return Line(raw, sid, "unknown_reference")


def posts_of(client: int, wave: int = 0) -> Iterator[Post]:
    """Client ``client``'s posts, without end. A batch: two new check-ins, a forbidden line,
    a repeat (of the previous batch's first check-in, or of this one's) and an unknown key
    result, in an order that turns with each post. One at a time: the same four, in turn."""
    last: Line | None = None
    for n in range(1_000_000):
        sid = f"w{wave}-t{client}-{n}"
        if client < BATCH_THREADS:
            first = _ok(f"{sid}-a", n)
            lines = [
                first,
                _forbidden(f"{sid}-f"),
                last or first,
                _unknown(f"{sid}-x"),
                _ok(f"{sid}-b", n + 0.5),
            ]
            last = first
            turn = (client + n) % len(lines)
            yield Post(client, tuple(lines[turn:] + lines[:turn]), batch=True)
        else:
            kind = n % 4
            if kind == 0:
                last = line = _ok(f"{sid}-a", n)
            elif kind == 2 and last is not None:
                line = last
            else:
                line = _forbidden(f"{sid}-f") if kind == 1 else _unknown(f"{sid}-x")
            yield Post(client, (line,), batch=False)


def outcomes_of(post: Post, answer: httpx.Response) -> list[dict[str, Any]]:
    """The outcome of each line, whatever the form of the answer."""
    if post.batch:
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        return outcome_lines(answer.content)
    document = answer.json()
    outcome = document.get("outcome", document)
    expected = {"accepted": 201, "duplicate": 200}.get(outcome["status"])
    if expected is None:
        expected = 403 if outcome.get("reason_code") == "forbidden" else 422
    assert answer.status_code == expected, answer.text
    return [outcome]


@dataclass
class Client:
    """One client's thread: ``limit`` posts, or fewer if the server goes away."""

    server: Server
    key: str
    posts: Iterator[Post]
    limit: int
    answered: list[tuple[Post, list[dict[str, Any]]]] = field(default_factory=list)
    unanswered: list[Post] = field(default_factory=list)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.server.client(self.key) as http:
                for _, post in zip(range(self.limit), self.posts, strict=False):
                    headers = NDJSON if post.batch else {}
                    try:
                        answer = http.post("/v1/submissions", content=post.body, headers=headers)
                    except httpx.TransportError:
                        self.unanswered.append(post)
                        return
                    self.answered.append((post, outcomes_of(post, answer)))
        except BaseException as error:  # reported by run_clients
            self.error = error


def run_clients(
    server: Server,
    key: str,
    limit: int,
    until: Callable[[list[Client]], None] | None = None,
    wave: int = 0,
) -> list[Client]:
    """Every client posting at once, ``limit`` posts each; ``until(clients)`` runs meanwhile."""
    clients = [
        Client(server, key, posts_of(n, wave), limit) for n in range(BATCH_THREADS + SINGLE_THREADS)
    ]
    threads = [threading.Thread(target=c.run) for c in clients]
    for thread in threads:
        thread.start()
    try:
        if until is not None:
            until(clients)
    finally:
        for thread in threads:
            thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    for client in clients:
        assert client.error is None, repr(client.error)
    return clients


def jira_events(served: Served) -> dict[str, list[dict[str, Any]]]:
    """The ledger's events from source ``jira``, by ``source_event_id``; its chain verified."""
    log = served.ledger()
    try:
        assert all(report.ok for report in log.verify()), log.verify()
        found: dict[str, list[dict[str, Any]]] = {}
        for record in log.read_records("northwind"):
            if record["source"] == "jira":
                found.setdefault(record["source_event_id"], []).append(record)
        return found
    finally:
        log.close()


def recorded_rejections(served: Served) -> Counter[tuple[str, bytes, int | None]]:
    return Counter((r.reason.value, r.raw, r.line) for r in served.rejections())


def check_answer(
    post: Post, outcomes: list[dict[str, Any]], events: dict[str, list[dict[str, Any]]]
) -> None:
    """Each outcome is its own line's: a refusal with its reason and line number, an event
    that is the line's (by its ``source_event_id``), an acceptance with the event's stored
    sequence and hash."""
    assert len(outcomes) == len(post.lines), (post, outcomes)
    for number, (line, outcome) in enumerate(zip(post.lines, outcomes, strict=True), start=1):
        if line.kind == "ok":
            assert outcome["status"] in ("accepted", "duplicate"), (line, outcome)
            (event,) = events[line.source_event_id]
            assert outcome["event_id"] == event["event_id"], (line, outcome)
            if outcome["status"] == "accepted":
                assert (outcome["sequence"], outcome["hash"]) == (event["sequence"], event["hash"])
        else:
            assert outcome["status"] == "rejected", (line, outcome)
            assert outcome["reason_code"] == line.kind, (line, outcome)
            assert outcome.get("line") == (number if post.batch else None), (line, outcome)


def expected_rejections(posts: list[Post]) -> Counter[tuple[str, bytes, int | None]]:
    return Counter(
        (line.kind, line.raw, number if post.batch else None)
        for post in posts
        for number, line in enumerate(post.lines, start=1)
        if line.kind != "ok"
    )


def shared_groups(server: Server) -> int:
    """Groups the server's writer took that held parts of several requests: over 5
    submissions (a request here sends at most 3 to decide and 2 refusals)."""
    text = httpx.get(f"{server.base}/metrics", timeout=60).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == GROUP_METRIC]
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    return int(
        samples[(f"{GROUP_METRIC}_count", None)] - samples[(f"{GROUP_METRIC}_bucket", "5.0")]
    )


def check_round(clients: list[Client], events: dict[str, list[dict[str, Any]]]) -> None:
    """Every answer its request's own; each check-in accepted the first time its client sent
    it, a duplicate after; each stored once."""
    answered = [pair for client in clients for pair in client.answered]
    assert len(answered) == 30 * len(clients)
    ok = {line.source_event_id for post, _ in answered for line in post.lines if line.kind == "ok"}
    assert len(ok) == BATCH_THREADS * 30 * 2 + SINGLE_THREADS * len(range(0, 30, 4))
    for client in clients:
        seen: set[str] = set()
        for post, outcomes in client.answered:
            check_answer(post, outcomes, events)
            for line, outcome in zip(post.lines, outcomes, strict=True):
                if line.kind == "ok":
                    new = line.source_event_id not in seen
                    assert outcome["status"] == ("accepted" if new else "duplicate"), line
                    seen.add(line.source_event_id)
    sent = {line.source_event_id for post, _ in answered for line in post.lines}
    assert set(events) & sent == ok
    assert all(len(events[sid]) == 1 for sid in ok)


def test_concurrent_clients_each_get_their_own_outcomes_and_the_ledger_holds_them(
    tmp_path: Path,
) -> None:
    """Rounds of 30 posts a client (up to 3, until the writer took a group holding parts of
    several requests, as its group-size metric shows)."""
    with serving_the_demo(tmp_path, idle_s=0, extra_env=GROUPS) as served:
        posted: list[Post] = []
        before = recorded_rejections(served)
        for wave in range(3):
            clients = run_clients(served.server, served.writer, limit=30, wave=wave)
            check_round(clients, jira_events(served))
            posted += [post for client in clients for post, _ in client.answered]
            if shared_groups(served.server):
                break
        else:
            raise AssertionError("no group of the writer held parts of several requests")
        rejected = recorded_rejections(served) - before
    assert rejected == expected_rejections(posted)


def kill_while_posting(server: Server, key: str, wave: int) -> list[Client]:
    """Every client posting (ids of their own for this ``wave``) until ``server`` is
    SIGKILLed, once they have 40 answers between them."""
    process = server.process
    assert process is not None

    def kill_midway(clients: list[Client]) -> None:
        deadline = time.monotonic() + 120
        while sum(len(c.answered) for c in clients) < 40:
            assert time.monotonic() < deadline, server.log_tail()
            assert process.poll() is None, server.log_tail()
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    clients = run_clients(server, key, 1_000_000, until=kill_midway, wave=wave)
    assert all(len(c.unanswered) == 1 for c in clients)  # each stopped at its first failure
    return clients


def cut_after_commit(clients: list[Client], events: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether the kill cut a request whose own new events were (some or all) stored."""
    for client in clients:
        earlier = {line.source_event_id for post, _ in client.answered for line in post.lines}
        (post,) = client.unanswered
        if any(
            line.source_event_id in events
            for line in post.lines
            if line.kind == "ok" and line.source_event_id not in earlier
        ):
            return True
    return False


def test_a_sigkilled_server_kept_every_answer_and_a_resend_counts_nothing_twice(
    tmp_path: Path,
) -> None:
    """Killed while the clients post (again, up to 4 waves, until a kill cuts a request after
    its events were stored): every acknowledged line is in the ledger (an event) or in the
    rejection log, as answered. Sent again to a restarted server, each acknowledged event is a
    duplicate of itself, an unanswered one is stored once, and the chain holds."""
    with serving_the_demo(tmp_path, idle_s=0, extra_env=GROUPS) as served, ExitStack() as stack:
        before = recorded_rejections(served)
        server, waves = served.server, list[list[Client]]()
        for wave in range(1, 5):
            clients = kill_while_posting(server, served.writer, wave)
            waves.append(clients)
            events = jira_events(served)
            answered = [pair for client in clients for pair in client.answered]
            for post, outcomes in answered:
                check_answer(post, outcomes, events)
            refusals = expected_rejections([p for cs in waves for c in cs for p, _ in c.answered])
            assert recorded_rejections(served) - before >= refusals
            if cut_after_commit(clients, events):
                break
            server = Server(served.env, tmp_path / f"wave{wave}.log")
            stack.callback(server.stop)
            server.start()
            server.wait_ready()
        else:
            raise AssertionError("no kill cut a request after its events were stored")

        with running(served.env, tmp_path / "restarted.log") as restarted:
            resent: list[tuple[Post, list[dict[str, Any]]]] = []
            for client in [client for clients in waves for client in clients]:
                with restarted.client(served.writer) as http:  # its posts again, in its order
                    for post in [post for post, _ in client.answered] + client.unanswered:
                        headers = NDJSON if post.batch else {}
                        answer = http.post("/v1/submissions", content=post.body, headers=headers)
                        resent.append((post, outcomes_of(post, answer)))
        events = jira_events(served)

    before_kill = {
        line.source_event_id: outcome["event_id"]
        for clients in waves
        for client in clients
        for post, outcomes in client.answered
        for line, outcome in zip(post.lines, outcomes, strict=True)
        if line.kind == "ok"
    }
    assert before_kill
    for post, outcomes in resent:
        check_answer(post, outcomes, events)
        for line, outcome in zip(post.lines, outcomes, strict=True):
            if line.source_event_id in before_kill:
                assert outcome["status"] == "duplicate", (line, outcome)
                assert outcome["event_id"] == before_kill[line.source_event_id]
    ok = {line.source_event_id for post, _ in resent for line in post.lines if line.kind == "ok"}
    assert all(len(events[sid]) == 1 for sid in ok)
    refused = {line.source_event_id for p, _ in resent for line in p.lines if line.kind != "ok"}
    assert not refused & set(events)
