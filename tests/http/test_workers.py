"""``okr-ledger serve --workers 2``: two real uvicorn worker processes on one socket, one
embedded ledger. Concurrent NDJSON batches (a line of each post sent by every client at once,
so that both processes decide the same submission), reads, ``/metrics`` summed over the
processes, SIGTERM/SIGINT that leave no process, and start-up errors that stop the server."""

import fcntl
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from okr_ledger import kept_projections
from okr_ledger.kept_projections import SHARED_LOCK, KeptProjections
from okr_ledger.settings import Settings
from okr_ledger.store_host import STORE_URL_FILE
from projections.client import holder
from projections.store import ProjectionStore
from schemas.errors import ProjectionUnavailableError
from tests.http.conftest import Served, demo_ledger, serving_the_demo
from tests.http.support import HOOKS, Server, check_in, cli, free_port, ndjson, outcome_lines
from tests.kafka.worker_support import descendants, process_state

TWO = {"OKR_HTTP_WORKERS": "2"}
CLIENTS, POSTS, NEW = 6, 8, 4
"""Client threads, posts each a wave, new check-ins in each post (and one line shared by every
client's post of the same index)."""
NDJSON = {"Content-Type": "application/x-ndjson", "Connection": "close"}
"""A connection per request: the kernel hands each to either process."""
TIME_DEPENDENT = {"expected_progress", "status", "stale"}


def left_over(pids: set[int], timeout_s: float = 30.0) -> dict[int, bytes]:
    """Those of ``pids`` still running once ``timeout_s`` passed (or none is), with their
    command lines (multiprocessing's resource tracker ends once it reads the end of its pipe,
    a moment after the parent)."""
    deadline = time.monotonic() + timeout_s
    while (running := [p for p in pids if not ended(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = {}
    for pid in running:
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
    return found


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {name.decode(): value.decode() for name, _, value in pairs}


def ended(pid: int) -> bool:
    """Gone, or a zombie none of whose threads runs on: a process's first thread is shown
    ``Z`` as soon as it exits, while the others may still be ending (and hold its files, a
    listening socket among them)."""
    state = process_state(pid)
    if state != "Z":
        return state == "-"
    try:
        return {int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()} <= {pid}
    except OSError:  # reaped meanwhile
        return True


def listening(port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (any address; Linux: /proc/net/tcp and tcp6,
    state 0A). Not a bind of the port: once free, any process's outgoing connection may take
    it as its local port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                return True
    return False


def workers_of(server: Server) -> set[int]:
    """The worker processes (uvicorn's, spawned: not multiprocessing's resource tracker, nor
    the store's process)."""
    assert server.process is not None
    return {
        pid
        for pid in set(descendants(server.process.pid))
        if not any(
            name in Path(f"/proc/{pid}/cmdline").read_bytes()
            for name in (b"resource_tracker", b"okr_ledger.store_host")
        )
    }


def store_holder(served: Served) -> int | None:
    """The process that has the embedded store open (:func:`projections.client.holder`)."""
    return holder(str(served.settings.data_dir / "clickhouse"))


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics``: every sample by name and labels."""
    text = httpx.get(f"{server.base}/metrics", timeout=60).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def decided_by(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[int, float]:
    """Submissions each process's writer answered (``okr_http_process_submissions``, by pid)."""
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in metrics.items()
        if name == "okr_http_process_submissions_total"
    }


def total(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        value
        for (found, has), value in metrics.items()
        if found == name and labels.items() <= dict(has).items()
    )


def post_wave(served: Served, wave: int) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """Every client's ``POSTS`` batches at once: each post's source event ids and outcomes."""
    barrier = threading.Barrier(CLIENTS)
    results: list[list[tuple[list[str], list[dict[str, Any]]]]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with served.server.client(served.writer) as http:
                for post in range(POSTS):
                    ids = [f"w{wave}-c{n}-p{post}-{i}" for i in range(NEW)]
                    ids.insert(n % (NEW + 1), f"w{wave}-shared-p{post}")
                    body = ndjson(  # the shared line the same bytes from every client
                        [orjson.dumps(check_in(value=post, source_event_id=sid)) for sid in ids]
                    )
                    barrier.wait(timeout=60)
                    answer = http.post("/v1/submissions", content=body, headers=NDJSON)
                    assert answer.status_code == 200, answer.text
                    results[n].append((ids, outcome_lines(answer.content)))
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert not errors, errors
    return [pair for posts in results for pair in posts]


def read_progress(served: Served, readers: int = 4) -> list[list[dict[str, Any]]]:
    """``progress`` read by ``readers`` clients at once, on connections of their own."""
    answers: list[list[dict[str, Any]]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            with served.server.client(served.reader) as http:
                for _ in range(2):
                    answer = http.get(
                        "/v1/orgs/northwind/progress", headers={"Connection": "close"}
                    )
                    assert answer.status_code == 200, answer.text
                    answers.append(stable(answer.text))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return answers


def stable(body: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in orjson.loads(line).items() if k not in TIME_DEPENDENT}
        for line in body.splitlines()
    ]


def test_two_workers_take_concurrent_batches_and_the_ledger_holds_each_once(
    tmp_path: Path,
) -> None:
    """Waves of concurrent posts (up to 3, until both processes decided some); then reads
    through both, ``/metrics`` against what was posted, and SIGTERM."""
    with serving_the_demo(tmp_path, idle_s=10, extra_env=TWO) as served:
        workers = workers_of(served.server)
        assert len(workers) == 2
        # One process holds the store for the server's life and serves it to both workers.
        store_process = store_holder(served)
        assert served.server.process is not None
        assert store_process in descendants(served.server.process.pid)
        # The workers find it by a file of the supervisor's own: its password is in no
        # process's environment.
        worker_environment = environment(next(iter(workers)))
        url_file = Path(worker_environment[STORE_URL_FILE])
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(url_file.parent.stat().st_mode) == 0o700
        password = urlsplit(url_file.read_text()).password
        assert password
        for pid in {*workers, served.server.process.pid}:
            assert password not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
        metrics_dir = Path(worker_environment["PROMETHEUS_MULTIPROC_DIR"])
        assert metrics_dir.is_dir()
        before = scrape(served.server)
        posted: list[tuple[list[str], list[dict[str, Any]]]] = []
        for wave in range(3):
            posted += post_wave(served, wave)
            if len(decided_by(scrape(served.server))) == 2:
                break
        else:
            raise AssertionError(f"one process decided every batch: {scrape(served.server)}")
        reads = read_progress(served)
        after = scrape(served.server)
        assert store_holder(served) == store_process  # the same one, through every read
        process = served.server.process
        assert process is not None
        everything = set(descendants(process.pid))
        served.server.stop()  # SIGTERM
        assert process.returncode == 0, served.server.log_tail()
        # the workers, multiprocessing's resource tracker, and the store's process
        assert len(everything) == 4
        assert not left_over(everything)
        assert store_holder(served) is None
        assert not url_file.parent.exists()
        assert not metrics_dir.exists()

        log = served.ledger()
        try:
            assert all(report.ok for report in log.verify())
            records = list(log.read_records("northwind"))
        finally:
            log.close()
        on_cli = cli(served.env, "progress", "--org", "northwind", "--json")

    # Every submission stored once, each answer its own; the shared line of each post index
    # accepted once in all, a duplicate of that same event for every other client.
    events: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["source"] == "jira" and record["source_event_id"].startswith("w"):
            events.setdefault(record["source_event_id"], []).append(record)
    statuses: Counter[str] = Counter()
    shared: dict[str, Counter[str]] = {}
    for ids, outcomes in posted:
        assert len(outcomes) == len(ids)
        for sid, outcome in zip(ids, outcomes, strict=True):
            (event,) = events[sid]
            assert outcome["event_id"] == event["event_id"], (sid, outcome)
            statuses[outcome["status"]] += 1
            if "shared" in sid:
                shared.setdefault(sid, Counter())[outcome["status"]] += 1
            else:
                assert outcome["status"] == "accepted", (sid, outcome)
            if outcome["status"] == "accepted":
                assert (outcome["sequence"], outcome["hash"]) == (event["sequence"], event["hash"])
    assert set(events) == {sid for ids, _ in posted for sid in ids}
    assert all(c == Counter(accepted=1, duplicate=CLIENTS - 1) for c in shared.values()), shared
    sequences = [record["sequence"] for record in records]
    assert sequences == list(range(1, len(records) + 1))  # no gap, none twice

    # /metrics: the sum over both processes is what was posted; each answered some.
    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("okr_http_submissions_total", status="accepted") == statuses["accepted"]
    assert grew("okr_http_submissions_total", status="duplicate") == statuses["duplicate"]
    assert grew("okr_http_submissions_total") == sum(statuses.values())
    route = {"method": "POST", "route": "/v1/submissions"}
    assert grew("okr_http_requests_total", **route, status="200") == len(posted)
    assert grew("okr_http_request_seconds_count", **route) == len(posted)
    counts = decided_by(after)
    assert not decided_by(before)  # none decided before the waves: each count is theirs
    assert set(counts) == workers
    assert all(count > 0 for count in counts.values())
    assert sum(counts.values()) == sum(statuses.values())

    # The reads, through either process, answered what the CLI prints of the same ledger.
    assert on_cli.returncode == 0, on_cli.stderr
    assert reads
    assert all(answer == stable(on_cli.stdout) for answer in reads)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_parent_stops_every_worker(tmp_path: Path, stop: signal.Signals) -> None:
    with serving_the_demo(tmp_path, idle_s=10, extra_env=TWO) as served:
        process = served.server.process
        assert process is not None
        everything = set(descendants(process.pid))
        assert len(workers_of(served.server)) == 2
        process.send_signal(stop)
        assert process.wait(timeout=60) == 0, served.server.log_tail()
        assert not left_over(everything)


def test_the_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the parent (the OOM killer, ``kill -9``): its workers stop too, and free the
    port, instead of serving and writing on without a supervisor."""
    with serving_the_demo(tmp_path, idle_s=10, extra_env=TWO) as served:
        process = served.server.process
        assert process is not None
        workers = workers_of(served.server)
        assert len(workers) == 2
        store_process = store_holder(served)
        assert store_process is not None
        assert listening(served.server.port)
        process.kill()
        process.wait(timeout=10)
        assert not left_over(workers), "a worker went on without its supervisor"
        assert not listening(served.server.port), "the port is still served"
        assert not left_over({store_process}), "the store's process went on without the server"
        assert store_holder(served) is None


def test_a_store_process_that_ends_is_replaced_and_the_workers_read_on(tmp_path: Path) -> None:
    """SIGKILL to the process that serves the store to the workers (the OOM killer): the
    supervisor starts another, with a port and password of its own (so one who took the
    first's port learns nothing that opens the store), and reads through either worker
    answer again, without a restart of the server."""
    with serving_the_demo(tmp_path, idle_s=10, extra_env=TWO) as served:
        assert served.server.process is not None
        first = store_holder(served)
        assert first is not None
        url_file = Path(environment(next(iter(workers_of(served.server))))[STORE_URL_FILE])
        first_url = urlsplit(url_file.read_text())
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        with served.server.client(served.reader) as http:
            while True:
                answer = http.get("/v1/orgs/northwind/progress", headers={"Connection": "close"})
                if answer.status_code == 200:
                    break
                assert answer.status_code == 503, answer.text
                assert time.monotonic() < deadline, "no store process served the reads again"
                time.sleep(0.2)
        second = store_holder(served)
        assert second not in (None, first)
        assert second in descendants(served.server.process.pid)
        second_url = urlsplit(url_file.read_text())
        assert second_url.password != first_url.password
        stale = httpx.post(
            f"http://127.0.0.1:{second_url.port}/",
            content=b"SELECT 1",
            auth=(first_url.username or "", first_url.password or ""),
            timeout=30,
        )
        assert stale.status_code in (401, 403), stale.text
        assert all(len(answer) > 0 for answer in read_progress(served, readers=2))
        assert "the store's process" in served.server.log_tail()


@pytest.mark.parametrize("broken", ["hooks", "keys"])
def test_two_workers_do_not_start_on_a_bad_configuration(tmp_path: Path, broken: str) -> None:
    data = tmp_path / "data"
    demo_ledger(data)
    env = {"OKR_DATA_DIR": str(data), "OKR_HTTP_HOOKS_FILE": str(HOOKS), "OKR_HTTP_WORKERS": "2"}
    if broken == "hooks":
        bad = tmp_path / "hooks.toml"
        bad.write_text('[hooks.x]\ntype = "CheckInRecorded"\n')
        env["OKR_HTTP_HOOKS_FILE"] = str(bad)
        message = "error: hooks.x: required fields not mapped: envelope.org_id"
    else:
        (data / "keys.db").write_bytes(b"not a database" * 100)
        message = f"error: cannot open the key store {data / 'keys.db'}: file is not a database"
    done = cli(env, "serve", "--port", str(free_port()))
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_that_fails_to_start_stops_the_server(tmp_path: Path) -> None:
    """A configuration the parent's check passes but a worker's start fails on (here: the
    check left out, the hooks file bad): the supervisor stops every worker, not restarting
    them, and ``serve`` exits 1 with the worker's error and its own."""
    data = tmp_path / "data"
    demo_ledger(data)
    bad = tmp_path / "hooks.toml"
    bad.write_text('[hooks.x]\ntype = "CheckInRecorded"\n')
    env = {"OKR_DATA_DIR": str(data), "OKR_HTTP_HOOKS_FILE": str(bad)}
    unchecked = (
        "import okr_ledger.http.app as app; app.check = lambda *_: None; "
        "from okr_ledger.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", unchecked, "serve", "--port", str(free_port()), "--workers", "2"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    failed = [line for line in lines if line.startswith("error: worker ")]
    assert failed[0].split(": ", 2)[2].startswith("hooks.x: required fields not mapped")
    assert lines[-1].startswith("error: worker ")
    assert lines[-1].endswith("did not start (its error is above): every worker was stopped")
    assert len(failed) <= 3  # each worker once (and the parent's line): none started again
    assert "Traceback" not in done.stderr


# -- KeptProjections shared by the processes of one server, in this process ----------------------


def test_a_shared_reader_waits_its_turn_and_closes_the_store_after_each_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_ledger(tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data")
    kept = KeptProjections(settings, idle_s=60, shared=True)
    monkeypatch.setattr(kept_projections, "TURN_WAIT_S", 0.3)
    other = os.open(settings.data_dir / SHARED_LOCK, os.O_RDWR | os.O_CREAT)  # another worker's
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(ProjectionUnavailableError, match="busy with other reads"):
            kept.read(lambda store: store.positions())
        assert not kept.is_open
        fcntl.flock(other, fcntl.LOCK_UN)
        assert kept.read(lambda store: store.positions())["northwind"] > 0
        assert not kept.is_open  # closed at once, idle_s notwithstanding
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and its turn given back
    finally:
        os.close(other)
        kept.close()


@pytest.mark.parametrize(
    ("shared", "whose"), [(True, "the server's worker processes"), (False, "the server")]
)
def test_a_read_queued_behind_this_process_reads_waits_at_most_the_same_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool, whose: str
) -> None:
    """A read that waits for another read of its own process (the store has one session)
    waits at most TURN_WAIT_S too, then is unavailable; the read ahead of it is unharmed. So
    does one of a server of one process: reads queued behind a slow one do not pile up."""
    demo_ledger(tmp_path / "data")
    kept = KeptProjections(Settings(data_dir=tmp_path / "data"), idle_s=60, shared=shared)
    monkeypatch.setattr(kept_projections, "TURN_WAIT_S", 0.3)
    inside, release = threading.Event(), threading.Event()

    def held(store: ProjectionStore) -> dict[str, int]:
        inside.set()
        release.wait(30)
        return store.positions()

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(kept.read, held)
        assert inside.wait(30)
        try:
            with pytest.raises(
                ProjectionUnavailableError, match=f"busy with other reads of {whose} for 0s"
            ):
                kept.read(lambda store: store.positions())
        finally:
            release.set()
        assert first.result(30)["northwind"] > 0
    assert kept.read(lambda store: store.positions())["northwind"] > 0
    kept.close()
