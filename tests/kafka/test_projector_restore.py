"""A ledger partition taken over restores the projector's state from its state file.

The projector (:class:`processors.kafka_projector.LedgerProjection`) saves each ledger
partition's state in ``<data_dir>/projector-state/partition-<n>.sqlite``. A worker that gains
the partition reads on from the file's offset and replays only what lies between it and the
store's checkpoints; a file that is missing, corrupt, of another ledger or ahead of the store
is not used, and the partition is replayed from its beginning with the same answers. The
ledger is a real topic (Tansu: the file is checked against its record before the offset) and
the store real chDB; the two workers are two projections in this process, as the consumer
group would hand them the partition.
"""

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events import kafka_client
from events.kafka_client import Connection, OutRecord, Producer, Reader, partition_for
from events.kafka_records import RejectionLanes, decode_event, encode_event, org_key
from events.outcomes import Accepted
from events.sequencer import Sequencer
from processors import tables as t
from processors.kafka_projector import LedgerProjection, PartitionStates, ledger_record_at
from processors.snapshots import PartitionSnapshots, partition_state_file
from projections.store import ProjectionStore
from schemas.envelope import LedgerEvent
from tests.builders import chained_events, check_ins, org_setup, raw, sequence_all
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.projector_support import (
    assert_rebuild_identical,
    expected_heads,
    kill_while_projecting,
    projecting_worker,
    start_and_project,
    wait_projected,
)
from tests.kafka.worker_support import Submitter

pytestmark = pytest.mark.kafka

PARTITION = 0
CHECK_INS = 300
"""Per org: more than two chunks of saved check-ins (128), so that saving evicts some."""
BATCH = 40
"""Records per apply, as the agent hands them over."""
TABLES = (
    t.AUDIT,
    t.CHECK_INS,
    t.KEY_RESULTS,
    t.TARGETS,
    t.OBJECTIVES,
    t.THEMES,
    t.UNITS,
    t.PERIODS,
    t.STRATEGY,
    t.KEY_RESULT_NUMBERS,
)

Ledger = list[tuple[int, int, bytes | None, bytes | None]]


def orgs_of(partition: int, count: int) -> list[str]:
    found = (f"org{i}" for i in range(1000))
    return [o for o in found if partition_for(org_key(o), TEST_PARTITIONS) == partition][:count]


def interleaved(events: list[LedgerEvent], reverse: bool = False) -> list[LedgerEvent]:
    """The orgs' events taken in turn (each org's in its order): a valid ledger order."""
    by_org: dict[str, list[LedgerEvent]] = {}
    for event in events:
        by_org.setdefault(event.org_id, []).append(event)
    queues = [iter(q) for q in (reversed(list(by_org.values())) if reverse else by_org.values())]
    ordered: list[LedgerEvent] = []
    while queues:
        for queue in list(queues):
            taken = next(queue, None)
            if taken is None:
                queues.remove(queue)
            else:
                ordered.append(taken)
    return ordered


def produce(
    kafka: Connection, topic: str, events: list[LedgerEvent], partition: int = PARTITION
) -> Ledger:
    """``events`` appended to ``partition`` of ``topic``, then read back as the consumer hands
    them over."""
    producer = Producer(kafka)
    try:
        producer.send_all(
            [OutRecord(topic, partition, org_key(e.org_id), encode_event(e)) for e in events]
        )
    finally:
        producer.close()
    reader = Reader(kafka)
    try:
        return [(r.partition, r.offset, r.key, r.value) for r in reader.read(topic, {partition: 0})]
    finally:
        reader.close()


def ledger_events(kafka: Connection, topic: str, partition: int) -> list[dict[str, Any]]:
    """The events of ``partition`` of ``topic``, in offset order (orphans and markers left out)."""
    reader = Reader(kafka)
    try:
        return [decode_event(r.value) for r in reader.read(topic, {partition: 0}) if r.key]
    finally:
        reader.close()


def batches(records: Ledger) -> Iterator[Ledger]:
    for start in range(0, len(records), BATCH):
        yield records[start : start + BATCH]


def worker(store: ProjectionStore, states: PartitionStates | None = None) -> LedgerProjection:
    return LedgerProjection(store, TEST_PARTITIONS, RejectionLanes(1), states=states)


def project(projection: LedgerProjection, records: Ledger) -> None:
    for batch in batches(records):
        projection.apply(batch, [])


def contents(store: ProjectionStore) -> dict[str, list[str]]:
    return {
        table: sorted(map(repr, store.rows(f"SELECT DISTINCT * FROM {{db}}.{table} ORDER BY ALL")))
        for table in TABLES
    }


def rebuilt(
    path: Path, records: Ledger, partitions: frozenset[int] = frozenset({PARTITION})
) -> dict[str, list[str]]:
    """The projections of ``records`` (of ``partitions``) rebuilt in a store of their own, in
    one go."""
    store = ProjectionStore.open(f"chdb://{path}")
    try:
        projection = worker(store)
        projection.take(set(partitions))
        projection.apply(records, [])
        return contents(store)
    finally:
        store.close()


@pytest.fixture
def ledger(kafka: Connection, topics: dict[str, str]) -> tuple[str, list[LedgerEvent]]:
    events = interleaved(chained_events(*orgs_of(PARTITION, 2), check_in_count=CHECK_INS))
    return topics["ledger"], events


def test_a_partition_taken_over_replays_only_what_is_beyond_its_saved_state(
    kafka: Connection, ledger: tuple[str, list[LedgerEvent]], tmp_path: Path
) -> None:
    """The first owner saves on its revoke; the next one (same data directory) reads on from
    the file's offset, replays nothing and projects the rest: the projections equal a
    rebuild, and the first owner kept of each key result's check-ins only the last chunk."""
    topic, events = ledger
    records = produce(kafka, topic, events)
    cut = 2 * (len(records) // 3)  # even: each org at the same position
    states = PartitionStates(tmp_path / "data", ledger_record_at(kafka, topic))
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        first = worker(store, states)
        assert first.take({PARTITION}) == {PARTITION: None}
        project(first, records[:cut])
        first.release()
        kept = [org.key_results["kr1"].check_ins for org in first.projector.state.orgs.values()]
        assert all(log is not None and log.base > 0 for log in kept)  # evicted once saved

        second = worker(store, states)
        assert second.take({PARTITION}) == {PARTITION: cut}
        project(second, records[cut:])
        assert (second.restored, second.replayed) == (1, 0)
        assert second.projected == len(records) - cut
        answer = contents(store)
    finally:
        store.close()
    assert answer == rebuilt(tmp_path / "rebuilt", records)


def test_a_state_saved_before_a_crash_replays_only_from_its_offset(
    kafka: Connection, ledger: tuple[str, list[LedgerEvent]], tmp_path: Path
) -> None:
    """Saved every ``save_every`` records after a commit, the file is behind the store when
    its owner dies (no save on the way out): the next owner reads on from the file's offset,
    replays what lies between it and the store's checkpoints, and projects the rest."""
    topic, events = ledger
    records = produce(kafka, topic, events)
    cut = 2 * (len(records) // 3)  # even: each org at the same position
    every = 3 * BATCH + 1  # saved after the 4th, 8th... batch
    states = PartitionStates(tmp_path / "data", ledger_record_at(kafka, topic), every)
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        first = worker(store, states)
        first.take({PARTITION})
        project(first, records[:cut])
        first.release(save=False)  # as if killed: its file was saved at the last save
        saved_at = unsaved = 0
        for batch in batches(records[:cut]):
            unsaved += len(batch)
            if unsaved >= every:
                saved_at, unsaved = batch[-1][1] + 1, 0
        assert 0 < saved_at < cut

        second = worker(store, states)
        assert second.take({PARTITION}) == {PARTITION: saved_at}
        project(second, records[saved_at:])
        assert (second.restored, second.replayed) == (1, cut - saved_at)
        assert second.projected == len(records) - cut
        answer = contents(store)
    finally:
        store.close()
    assert answer == rebuilt(tmp_path / "rebuilt", records)


def _missing(path: Path, **_: Any) -> None:
    os.remove(path)


def _corrupt(path: Path, **_: Any) -> None:
    for name in (f"{path}-wal", f"{path}-shm"):
        if os.path.exists(name):
            os.remove(name)
    path.write_bytes(b"not a state file " * 500)


@pytest.mark.parametrize("fault", ["missing", "corrupt", "other ledger", "ahead of the store"])
def test_a_state_file_that_cannot_be_used_falls_back_to_the_whole_partition(
    fault: str,
    kafka: Connection,
    topics: dict[str, str],
    ledger: tuple[str, list[LedgerEvent]],
    tmp_path: Path,
) -> None:
    """The file is missing, corrupt, of another ledger (the same events in another order: the
    record before its offset differs) or ahead of the store's checkpoints (a store that lost
    its last commits): the next owner reads the partition from its beginning, replays what
    the store has and projects the rest, with the same answers as a rebuild."""
    topic, events = ledger
    records = produce(kafka, topic, events)
    cut = 2 * (len(records) // 3)  # even: each org at the same position
    directory = tmp_path / "data"
    states = PartitionStates(directory, ledger_record_at(kafka, topic))
    if fault == "other ledger":  # its file, made with a store of its own
        other_topic = topics["intake"]  # a topic of the test's own, as another ledger
        others = produce(kafka, other_topic, interleaved(events, reverse=True))
        with ProjectionStore.open(f"chdb://{tmp_path / 'other'}") as other_store:
            other_states = PartitionStates(directory, ledger_record_at(kafka, other_topic))
            other = worker(other_store, other_states)
            other.take({PARTITION})
            project(other, others[:cut])
            other.release()
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        first = worker(store, None if fault == "other ledger" else states)
        first.take({PARTITION})
        project(first, records[:cut])
        first.release()
        path = partition_state_file(directory, PARTITION)
        assert path.exists()
        done = cut
        if fault == "missing":
            _missing(path)
        elif fault == "corrupt":
            _corrupt(path)
        elif fault == "ahead of the store":  # a store that lost its last commits
            store.close()
            store = ProjectionStore.open(f"chdb://{tmp_path / 'behind'}")
            done = cut // 3
            behind = worker(store)
            behind.take({PARTITION})
            project(behind, records[:done])

        second = worker(store, states)
        assert second.take({PARTITION}) == {PARTITION: None}
        project(second, records)
        assert (second.restored, second.replayed) == (0, done)
        assert second.projected == len(records) - done
        second.release()  # the fallback's state, saved anew, is used by the next owner
        third = worker(store, states)
        assert third.take({PARTITION}) == {PARTITION: len(records)}
        assert third.restored == 1
        answer = contents(store)
    finally:
        store.close()
    assert answer == rebuilt(tmp_path / "rebuilt", records)


def test_a_worker_killed_and_restarted_restores_from_its_files_and_matches_a_rebuild(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The worker itself (``okr-ledger worker``), saving every 200 records: SIGKILLed while
    it projects and restarted on the same data directory, it takes its partitions from their
    files at least once, and the projections equal a rebuild of the ledger topic."""
    raws = org_setup("acme") + list(check_ins(1500, "acme"))
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env["OKR_PROJECTOR_SAVE_EVERY"] = "200"
    submitter = Submitter(kafka, topics["intake"])
    try:
        kill_while_projecting(worker, submitter, raws, seed=11, pause_s=(0.5, 1.5))
        wait_projected(worker, expected_heads(raws, tmp_path / "embedded.db"))
    finally:
        submitter.close()
        worker.stop()
    assert "restored from" in worker.log_path.read_text(errors="replace"), worker.log_tail()
    assert_rebuild_identical(worker)


def test_a_worker_stopped_gracefully_saves_its_states_and_reads_on_from_them(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """No revoke comes when a worker stops (SIGTERM): it saves its partitions' states then,
    and its next start takes the partition from the file, at the offset it stopped at."""
    raws = org_setup("acme") + list(check_ins(500, "acme"))
    heads = expected_heads(raws, tmp_path / "embedded.db")
    worker = projecting_worker(kafka, topics, tmp_path)
    submitter = Submitter(kafka, topics["intake"])
    try:
        start_and_project(worker, submitter, raws, heads)
        worker.stop()
        partition = partition_for(org_key("acme"), TEST_PARTITIONS)
        file = PartitionSnapshots(partition_state_file(Path(worker.env["OKR_DATA_DIR"]), partition))
        mark = file.mark()
        file.close()
        assert mark is not None, worker.log_tail()
        assert mark.next_offset > len(raws)  # and the transactions' markers
        worker.start()
        worker.wait_ready(2)
        wait_projected(worker, heads)
    finally:
        submitter.close()
        worker.stop()
    text = worker.log_path.read_text(errors="replace")
    assert f"reading on from offset {mark.next_offset}" in text


def test_a_correction_after_a_restore_reads_the_saved_check_ins_back(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """After the takeover, a correction and a retraction of the first check-ins (which the
    first owner saved and evicted) make the next owner read the whole log back from the file:
    the projections still equal a rebuild."""
    org = orgs_of(PARTITION, 1)[0]
    sequencer = Sequencer()
    setup = org_setup(org)
    head = sequence_all(setup + list(check_ins(CHECK_INS, org)), sequencer)
    events = [o.event for o in head if isinstance(o, Accepted)]
    first, second = events[len(setup)], events[len(setup) + 1]
    fixes = [
        raw(
            "CheckInCorrected",
            {"key_result_id": "kr1", "corrects_event_id": str(first.event_id), "value": 99,
             "reason": "a typo"},
            org_id=org,
        ),
        raw(
            "CheckInRetracted",
            {"key_result_id": "kr1", "retracts_event_id": str(second.event_id),
             "reason": "a duplicate"},
            org_id=org,
        ),
    ]  # fmt: skip
    tail = sequence_all(fixes + list(check_ins(5, org)), sequencer)
    events += [o.event for o in tail if isinstance(o, Accepted)]
    assert len(events) == len(setup) + CHECK_INS + len(fixes) + 5
    topic = topics["ledger"]
    records = produce(kafka, topic, events)
    cut = len(setup) + CHECK_INS
    states = PartitionStates(tmp_path / "data", ledger_record_at(kafka, topic))
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        owner = worker(store, states)
        owner.take({PARTITION})
        project(owner, records[:cut])
        owner.release()
        next_owner = worker(store, states)
        assert next_owner.take({PARTITION}) == {PARTITION: cut}
        state = next_owner.projector.state.orgs[org].key_results["kr1"]
        assert state.check_ins is None  # read back only when an event needs them
        project(next_owner, records[cut:])
        assert (next_owner.restored, next_owner.replayed) == (1, 0)
        answer = contents(store)
    finally:
        store.close()
    assert answer == rebuilt(tmp_path / "rebuilt", records)


def test_a_state_file_of_another_shape_or_none_reads_as_no_state(tmp_path: Path) -> None:
    """No file: nothing read and no file made. A file whose tables have other columns (an
    SQLite error on each read): no saved state and no mark, never an error."""
    path = partition_state_file(tmp_path, PARTITION)
    missing = PartitionSnapshots(path)
    assert (missing.mark(), missing.load("org1"), missing.read()) == (None, None, None)
    assert not path.exists()
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orgs (org_id TEXT PRIMARY KEY, other TEXT)")
        db.execute("CREATE TABLE mark (id INTEGER PRIMARY KEY, other TEXT)")
        db.execute("INSERT INTO orgs VALUES ('org1', 'x')")
        db.execute("INSERT INTO mark VALUES (0, 'x')")
    db.close()
    other = PartitionSnapshots(path)
    try:
        assert (other.mark(), other.load("org1"), other.read()) == (None, None, None)
    finally:
        other.close()


def test_a_take_of_several_partitions_checks_their_files_with_one_reader(
    kafka: Connection, topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each partition's file is checked against its ledger record, all with one reader of
    the ledger, made at the first check (a take without files makes none) and closed after
    the take."""
    topic, partitions = topics["ledger"], set(range(TEST_PARTITIONS))
    records = {
        p: produce(kafka, topic, chained_events(*orgs_of(p, 1), check_in_count=20), p)
        for p in partitions
    }
    opened: list[Reader] = []
    closed: list[Reader] = []

    class NotedReader(kafka_client.Reader):
        def __init__(self, connection: Connection) -> None:
            super().__init__(connection)
            opened.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(kafka_client, "Reader", NotedReader)
    states = PartitionStates(tmp_path / "data", ledger_record_at(kafka, topic))
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        first = worker(store, states)
        assert first.take(partitions) == dict.fromkeys(partitions)
        assert opened == []  # no file to check
        for partition in sorted(partitions):
            project(first, records[partition])
        first.release()
        second = worker(store, states)
        assert second.take(partitions) == {p: len(records[p]) for p in partitions}
        assert second.restored == len(partitions)
    finally:
        store.close()
    assert len(opened) == 1
    assert closed == opened


def drop_first_chunks(path: Path) -> None:
    """Delete the first check-in chunk of each key result in a state file: its documents,
    heads and mark are whole (the file is used), but those check-ins cannot be read back."""
    with sqlite3.connect(path) as db:
        deleted = db.execute("DELETE FROM check_in_chunks WHERE chunk = 0").rowcount
    db.close()
    assert deleted > 0


def test_an_unusable_saved_check_in_takes_its_partition_again_and_no_other(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """Two partitions taken from their files, one of which lost its first check-in chunks: a
    batch of both, whose correction reads those back, stores the other partition's rows, and
    names the bad partition to read again from its beginning (its file removed, its state
    dropped). Read again, it replays what the store has; the other partition is never
    replayed, and the projections equal a rebuild."""
    topic, bad, good = topics["ledger"], 0, 1
    org = orgs_of(bad, 1)[0]
    sequencer = Sequencer()
    setup = org_setup(org)
    head = sequence_all(setup + list(check_ins(CHECK_INS, org)), sequencer)
    events = [o.event for o in head if isinstance(o, Accepted)]
    first = events[len(setup)]
    fix = raw(
        "CheckInCorrected",
        {"key_result_id": "kr1", "corrects_event_id": str(first.event_id), "value": 99,
         "reason": "a typo"},
        org_id=org,
    )  # fmt: skip
    tail = sequence_all([fix, *check_ins(5, org)], sequencer)
    events += [o.event for o in tail if isinstance(o, Accepted)]
    records = {
        bad: produce(kafka, topic, events, bad),
        good: produce(
            kafka, topic, chained_events(orgs_of(good, 1)[0], check_in_count=CHECK_INS + 6), good
        ),
    }
    assert len(records[bad]) == len(records[good])
    cut = len(setup) + CHECK_INS
    directory = tmp_path / "data"
    states = PartitionStates(directory, ledger_record_at(kafka, topic))
    store = ProjectionStore.open(f"chdb://{tmp_path / 'store'}")
    try:
        owner = worker(store, states)
        owner.take({bad, good})
        project(owner, records[bad][:cut] + records[good][:cut])
        owner.release()
        drop_first_chunks(partition_state_file(directory, bad))
        next_owner = worker(store, states)
        assert next_owner.take({bad, good}) == {bad: cut, good: cut}
        assert next_owner.restored == 2
        assert next_owner.apply(records[bad][cut:] + records[good][cut:], []) == {bad}
        assert next_owner.retaken == 1
        assert not partition_state_file(directory, bad).exists()
        assert bad not in next_owner.next_offsets
        assert next_owner.next_offsets[good] == len(records[good])
        assert next_owner.projected == len(records[good]) - cut
        project(next_owner, records[bad])  # the consumer, sought back to the beginning
        assert next_owner.replayed == cut  # the bad partition's stored events only
        assert next_owner.projected == 2 * (len(records[bad]) - cut)
        next_owner.release()
        assert partition_state_file(directory, bad).exists()  # saved anew
        answer = contents(store)
    finally:
        store.close()
    both = frozenset({bad, good})
    assert answer == rebuilt(tmp_path / "rebuilt", records[bad] + records[good], both)


def test_a_worker_whose_saved_check_ins_are_unusable_runs_on_and_matches_a_rebuild(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    """The worker itself, restarted on state files one of which lost its first check-in
    chunks: a correction that reads them back makes it read that partition again from its
    beginning while it runs on (no restart); the other partition, taken from its file, is
    not read again; the projections equal a rebuild."""
    bad_org, good_org = orgs_of(0, 1)[0], orgs_of(1, 1)[0]
    raws = org_setup(bad_org) + list(check_ins(CHECK_INS, bad_org))
    raws += org_setup(good_org) + list(check_ins(CHECK_INS, good_org))
    heads = expected_heads(raws, tmp_path / "embedded.db")
    worker = projecting_worker(kafka, topics, tmp_path)
    worker.env["OKR_LOG_LEVEL"] = "DEBUG"  # the projector logs each hand-over's offsets
    data = Path(worker.env["OKR_DATA_DIR"])
    submitter = Submitter(kafka, topics["intake"])
    try:
        start_and_project(worker, submitter, raws, heads)
        worker.stop()
        saved = PartitionSnapshots(partition_state_file(data, 1))
        mark = saved.mark()
        saved.close()
        assert mark is not None, worker.log_tail()
        drop_first_chunks(partition_state_file(data, 0))
        first = next(
            e for e in ledger_events(kafka, topics["ledger"], 0) if e["type"] == "CheckInRecorded"
        )
        fixes = [
            raw(
                "CheckInCorrected",
                {"key_result_id": "kr1", "corrects_event_id": first["event_id"], "value": 99,
                 "reason": "a typo"},
                org_id=bad_org,
            ),
            *check_ins(5, bad_org),
            *check_ins(5, good_org),
        ]  # fmt: skip
        worker.start()
        worker.wait_ready(2)
        submitter.send(fixes)
        wait_projected(worker, {bad_org: heads[bad_org] + 6, good_org: heads[good_org] + 5})
        assert worker.alive()
    finally:
        submitter.close()
        worker.stop()
    text = worker.log_path.read_text(errors="replace")
    assert text.count("saved projector state is unusable") == 1, worker.log_tail()
    assert "ledger partition 0: its saved projector state is unusable" in text
    second = text[text.index("ledger partition 1: state of 1 orgs restored from") :]
    handed = [
        (int(p), int(first_offset))
        for p, first_offset in re.findall(r"ledger partition (\d+): offsets (\d+)-", second)
    ]
    assert (0, 0) in handed  # the bad partition, read again from its beginning
    assert all(offset >= mark.next_offset for p, offset in handed if p == 1), handed
    assert_rebuild_identical(worker)
