"""The Kafka sequencer's state files: named by partition only, SQLite only, a cache of the ledger.

Without a broker: a worker SIGKILLed in the middle of a batch leaves a file that a restore
brings up to date, giving the same decisions as a fold of the whole partition; a corrupt file
is deleted and the state made anew from the ledger. On the broker (:class:`SequencerCore`, as
the worker runs it): a file behind the ledger is caught up by reading only what follows it; a
file ahead of the ledger (of another ledger), a corrupt one and a missing one are rebuilt from
the ledger, which stays the only source of truth.
"""

import ast
import inspect
import multiprocessing
import os
import shutil
import signal
import sqlite3
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import state_store
from events.chain import verify_chain
from events.intake_wire import intake_message
from events.kafka_admin import ensure_topics, okr_topics
from events.kafka_client import Connection, Reader, partition_for
from events.kafka_records import ChainRule, decode_event, org_key
from events.outcomes import Accepted
from events.sequencer import DEFAULT_POLICY, Sequencer
from processors import sequencer_state
from processors.kafka_config import Topics as TopicNames
from processors.kafka_config import WorkerConfig
from processors.kafka_sequencer import (
    IntakeRecord,
    OutcomeRecord,
    PartitionSequencer,
    StoredRecord,
)
from processors.sequencer_core import SequencerCore, Verdict
from processors.sequencer_state import (
    FileState,
    MemoryState,
    PartitionState,
    open_state,
    state_file,
)
from tests.builders import NOW, check_ins, org_setup
from tests.builders import raw as raw_submission
from tests.kafka.sequencer_support import (
    CrashError,
    Topics,
    assert_recorded_exactly_once,
    intake_of,
    submissions,
)
from tests.ledger.state_checks import assert_store_is_the_fold, histories

ORG = "acme"


# -- names and format ---------------------------------------------------------------------


def test_a_state_file_is_named_by_its_partition_number_only(tmp_path: Path) -> None:
    assert state_file(tmp_path, 7) == tmp_path / "sequencer-state" / "partition-7.db"
    for bad in (-1, "7", "../x", 1.0, True):
        with pytest.raises(ValueError, match="partition number"):
            state_file(tmp_path, bad)  # type: ignore[arg-type]


def test_a_state_file_is_sqlite_tables_and_runs_no_code_when_read(tmp_path: Path) -> None:
    raws = submissions()
    path = state_file(tmp_path, 0)
    Topics().run_on_file(intake_of(raws), 16, path)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    for module in (sequencer_state, state_store):  # the modules that read it load no code
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (
                node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
            )
        }
        assert not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}


# -- a SIGKILL in the middle of a batch -----------------------------------------------------


def _dump(topics: Topics, path: Path) -> None:
    def stored(s: StoredRecord) -> dict[str, Any]:
        headers = [[k, v.hex() if v is not None else None] for k, v in s.headers]
        key = s.key.hex() if s.key is not None else None
        return {"offset": s.offset, "value": s.value.hex(), "headers": headers, "key": key}

    path.write_bytes(
        orjson.dumps(
            {
                "ledger": [stored(s) for s in topics.ledger],
                "rejections": [stored(s) for s in topics.rejections],
                "outcomes": [[o.partition, o.key.hex(), o.value.hex()] for o in topics.outcomes],
            }
        )
    )


def _load(path: Path) -> Topics:
    data = orjson.loads(path.read_bytes())

    def stored(d: dict[str, Any]) -> StoredRecord:
        headers = tuple((k, bytes.fromhex(v) if v is not None else None) for k, v in d["headers"])
        key = bytes.fromhex(d["key"]) if d["key"] is not None else None
        return StoredRecord(d["offset"], bytes.fromhex(d["value"]), headers, key)

    return Topics(
        ledger=[stored(d) for d in data["ledger"]],
        rejections=[stored(d) for d in data["rejections"]],
        outcomes=[
            OutcomeRecord(p, bytes.fromhex(k), bytes.fromhex(v)) for p, k, v in data["outcomes"]
        ],
    )


class _KilledTopics(Topics):
    """Topics whose process is SIGKILLed at the write its budget runs out on, after saving
    what was written so far (the broker's side survives a worker's death)."""

    dump: Path | None = None

    def _spend(self) -> None:
        try:
            super()._spend()
        except CrashError:
            assert self.dump is not None
            _dump(self, self.dump)
            os.kill(os.getpid(), signal.SIGKILL)


def _run_and_die(raws: list[bytes], batch_size: int, path: Path, dump: Path, budget: int) -> None:
    topics = _KilledTopics(budget=budget)
    topics.dump = dump
    topics.run_on_file(intake_of(raws), batch_size, path)
    _dump(topics, dump)  # the budget outlived the intake


def _restored_from_file(topics: Topics, path: Path) -> tuple[PartitionSequencer, int]:
    """As the worker restores a partition with a state file; and the ledger records read."""
    core, ledger_from, rejections_from = PartitionSequencer.from_state(
        0, 1, DEFAULT_POLICY, FileState(path, 0)
    )
    read = core.fold_ledger(s for s in topics.ledger if s.offset >= (ledger_from or 0))
    core.fold_rejections(s for s in topics.rejections if s.offset >= (rejections_from or 0))
    core.resume()
    return core, read


def _decide_rest(core: PartitionSequencer, topics: Topics, intake: list[IntakeRecord]) -> Topics:
    """Sequence the rest of intake on a copy of ``topics``; the copy."""
    copy = Topics(list(topics.ledger), list(topics.rejections), list(topics.outcomes))
    start = core.resume_offset or 0
    for index in range(start, len(intake), 10):
        with core.deciding(intake[index : index + 10], NOW + timedelta(seconds=5)) as output:
            copy._write(output)
            ledger_next = len(copy.ledger) if output.events else None
            core.keep(output, ledger_next, len(copy.rejections))
    return copy


def test_a_state_file_survives_a_sigkill_mid_batch_and_restores_as_a_fold_of_the_whole_partition(
    tmp_path: Path,
) -> None:
    """A real SIGKILL at every 7th write (a write = one record to one topic): the file is
    left as the last batch kept it, behind the topics; the restore reads what follows it."""
    raws = submissions()
    intake = intake_of(raws)
    clean = Topics()
    clean.run(intake, 10)
    writes = len(clean.ledger) + len(clean.rejections) + len(clean.outcomes)
    behind = 0
    for budget in range(1, writes, 7):
        run = tmp_path / str(budget)
        run.mkdir()
        behind += _killed_and_restored(raws, intake, run, budget)
    assert behind >= 5  # that many kills left events in the ledger beyond the file


def _intake_offset(outcome: bytes) -> int:
    offset: int = orjson.loads(outcome)["intake_offset"]
    return offset


def _killed_and_restored(
    raws: list[bytes], intake: list[IntakeRecord], tmp_path: Path, budget: int
) -> bool:
    """Kill a worker after ``budget`` writes, restore from its file; whether the file was
    behind the ledger's events."""
    path, dump = state_file(tmp_path, 0), tmp_path / "topics.json"
    child = multiprocessing.get_context("fork").Process(
        target=_run_and_die, args=(raws, 10, path, dump, budget)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL  # killed in the middle of writing a batch
    topics = _load(dump)
    probe = FileState(path, 0)
    kept = probe.ledger_next or 0
    probe.close()
    assert kept <= len(topics.ledger)  # never ahead of the ledger

    from_file, read = _restored_from_file(topics, path)
    folded = PartitionSequencer.restore(0, 1, topics.ledger, topics.rejections)
    assert read == len(topics.ledger) - kept  # only what follows the file
    # the file knows the batch before the kill was written whole (outcomes too): the fold
    # re-reads it and only sends its outcomes again
    resume = from_file.resume_offset or 0
    assert resume >= (folded.resume_offset or 0)
    orgs = {decode_event(s.value)["org_id"] for s in topics.ledger}
    for org_id in orgs:
        assert from_file.state.head(org_id) == folded.state.head(org_id)

    # the same decisions from here on: byte for byte the same events and outcomes
    on_file = _decide_rest(from_file, topics, intake)
    from_fold = _decide_rest(folded, topics, intake)
    assert [s.value for s in on_file.ledger] == [s.value for s in from_fold.ledger]
    assert [s.value for s in on_file.rejections] == [s.value for s in from_fold.rejections]
    sent = len(topics.outcomes)
    again = [o.value for o in from_fold.outcomes[sent:] if _intake_offset(o.value) < resume]
    assert set(again) <= {o.value for o in topics.outcomes}  # the same answers, sent again
    assert [o.value for o in on_file.outcomes[sent:]] == [
        o.value for o in from_fold.outcomes[sent:] if _intake_offset(o.value) >= resume
    ]
    from_file.state.close()
    assert_recorded_exactly_once(on_file, raws)
    return kept < len(topics.ledger)


def test_a_corrupt_state_file_is_deleted_and_made_again_from_the_ledger(tmp_path: Path) -> None:
    raws = submissions()
    intake = intake_of(raws)
    path = state_file(tmp_path, 0)
    topics = Topics()
    topics.run_on_file(intake[:60], 10, path)
    path.write_bytes(b"not a database" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    state = open_state(path, 0)
    assert isinstance(state, FileState)  # a new, empty file
    assert state.ledger_next is None
    state.close()
    topics.run_on_file(intake, 10, path)  # the rest, on a state folded from the whole ledger
    assert_recorded_exactly_once(topics, raws)


def test_a_state_file_held_by_another_process_leaves_the_state_in_memory(tmp_path: Path) -> None:
    path = state_file(tmp_path, 3)
    held = FileState(path, 3)
    try:
        ctx = multiprocessing.get_context("fork")
        result = ctx.Queue()
        child = ctx.Process(target=lambda: result.put(type(open_state(path, 3)).__name__))
        child.start()
        child.join(30)
        assert result.get(timeout=5) == "MemoryState"
    finally:
        held.close()
    again: PartitionState = open_state(path, 3)
    assert isinstance(again, FileState)
    again.close()
    assert isinstance(open_state(None, 3), MemoryState)


# -- on the broker, as the worker runs it ----------------------------------------------------


def _names(kafka: Connection) -> TopicNames:
    suffix = uuid.uuid4().hex[:12]
    names = {r: f"test.{suffix}.{r}" for r in ("intake", "ledger", "rejections", "outcomes")}
    ensure_topics(kafka, okr_topics(**names, partitions=3))
    return TopicNames(**names)


def _intake(count: int) -> tuple[int, list[IntakeRecord]]:
    partition = partition_for(org_key(ORG), 3)
    raws = [*org_setup(ORG), *check_ins(count, ORG)]
    records = []
    for offset, raw in enumerate(raws):
        message = intake_message(raw, f"s{offset}", None)
        records.append(IntakeRecord(partition, offset, message.value, message.headers, message.key))
    return partition, records


def _core(address: str, topics: TopicNames, data_dir: Path, files: bool = True) -> SequencerCore:
    config = WorkerConfig(
        servers=(address,),
        app_id=f"test-{uuid.uuid4().hex[:8]}",
        topics=topics,
        data_dir=data_dir,
        state_files=files,
        timeout_s=15.0,
    )
    return SequencerCore(config)


def _sequence(core: SequencerCore, partition: int, records: list[IntakeRecord]) -> None:
    restored = core.restore(partition)
    live = [r for r in records if r.offset >= restored.resume]
    for index in range(0, len(live), 20):
        result = core.sequence(partition, live[index : index + 20])
        assert result.verdict is Verdict.WRITTEN


def _ledger(kafka: Connection, topics: TopicNames, partition: int) -> list[dict[str, Any]]:
    reader = Reader(kafka)
    try:
        rule = ChainRule()
        events = [decode_event(r.value) for r in reader.read(topics.ledger, {partition: None})]
        return [e for e in events if rule.admit(e)]
    finally:
        reader.close()


def _head_after_restore(core: SequencerCore, partition: int) -> tuple[int, tuple[int, str]]:
    restored = core.restore(partition)
    head = core._owned[partition].sequencer.state.head(ORG)
    return restored.folded, (head.sequence, head.hash)


def test_a_state_file_behind_the_ledger_is_caught_up_reading_only_what_follows_it(
    kafka: Connection, kafka_address: str, tmp_path: Path
) -> None:
    topics = _names(kafka)
    partition, records = _intake(120)
    path = state_file(tmp_path, partition)
    first = _core(kafka_address, topics, tmp_path)
    _sequence(first, partition, records[:60])
    first.close()
    shutil.copy(path, tmp_path / "behind.db")
    second = _core(kafka_address, topics, tmp_path)
    _sequence(second, partition, records[:100])
    second.close()
    total = len(_ledger(kafka, topics, partition))
    shutil.copy(tmp_path / "behind.db", path)  # the file as it was 40 records ago

    third = _core(kafka_address, topics, tmp_path)
    read, head = _head_after_restore(third, partition)
    assert 0 < read < total - 30  # what follows the file, not the whole partition
    fold = _core(kafka_address, topics, tmp_path / "none", files=False)
    folded_read, folded_head = _head_after_restore(fold, partition)
    fold.close()
    assert folded_read >= total
    assert head == folded_head
    _sequence(third, partition, records)  # the rest: decided once, on the chain
    third.close()
    ledger = _ledger(kafka, topics, partition)
    assert [e["sequence"] for e in ledger] == list(range(1, len(records) + 1))
    assert verify_chain(ORG, ledger).ok


@pytest.mark.parametrize("damage", ["another ledger", "corrupt", "missing"])
def test_a_state_file_ahead_of_the_ledger_corrupt_or_missing_is_rebuilt_from_the_ledger(
    damage: str, kafka: Connection, kafka_address: str, tmp_path: Path
) -> None:
    partition, records = _intake(60)
    path = state_file(tmp_path, partition)
    old = _names(kafka)
    core = _core(kafka_address, old, tmp_path)
    _sequence(core, partition, records)  # the file reflects all of ``old``'s 60+ events
    core.close()
    topics = _names(kafka)
    core = _core(kafka_address, topics, tmp_path / "other")
    _sequence(core, partition, records[:20])
    core.close()
    if damage == "another ledger":  # the file is ahead of this ledger: of another one
        pass
    elif damage == "corrupt":
        path.write_bytes(b"\x00garbage" * 512)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        path.unlink()

    core = _core(kafka_address, topics, tmp_path)
    read, head = _head_after_restore(core, partition)
    assert read == len(_ledger(kafka, topics, partition)) == 20
    assert head[0] == 20
    _sequence(core, partition, records)
    core.close()
    ledger = _ledger(kafka, topics, partition)
    assert [e["sequence"] for e in ledger] == list(range(1, len(records) + 1))
    assert verify_chain(ORG, ledger).ok
    state = FileState(path, partition)  # the file was made again, and follows this ledger
    assert state.ledger_next is not None
    assert state.ledger_next >= len(records)
    state.close()


# -- a state file's batches: failed writes, sources -------------------------------------------

RETIRE_KR1 = raw_submission(
    "KeyResultRetired", {"key_result_id": "kr1", "reason": "dropped"}, org_id=ORG
)


class _WriteFailedError(Exception):
    """The batch's write failed (the ledger did not take it)."""


def _file_run(path: Path) -> tuple[PartitionSequencer, list[IntakeRecord], list[str]]:
    """A sequencer on a state file at ``path`` that decided the org's setup and one check-in
    on kr1; the records, numbered on; the SQL it runs from now on."""
    state = FileState(path, 0)
    sequencer = PartitionSequencer(0, 1, state=state)
    records = intake_of(
        [*org_setup(ORG), next(check_ins(1, ORG)), RETIRE_KR1, next(check_ins(1, ORG))]
    )
    _decide(sequencer, records[:-2], ledger_next=len(records) - 2)
    statements: list[str] = []
    state.store._db.set_trace_callback(statements.append)
    return sequencer, records, statements


def _decide(
    sequencer: PartitionSequencer, records: list[IntakeRecord], ledger_next: int
) -> list[Any]:
    with sequencer.deciding(records, NOW) as output:
        sequencer.keep(output, ledger_next, 0)
    return [o.value for o in output.outcomes]


def _decide_and_fail_to_write(sequencer: PartitionSequencer, record: IntakeRecord) -> None:
    with sequencer.deciding([record], NOW) as output:
        assert [_outcome(o.value) for o in output.outcomes] == ["accepted"]
        raise _WriteFailedError  # as SequencerCore._write raising: the batch is not kept


def _outcome(outcome: bytes) -> str:
    status: str = orjson.loads(outcome)["status"]
    return status


def _key_result_reads(statements: list[str]) -> list[str]:
    return [s for s in statements if "FROM sequencer_key_results" in s]


def test_what_a_batch_whose_write_failed_decided_is_not_in_the_state_file(
    tmp_path: Path,
) -> None:
    """A batch retires kr1 and its write fails: the next batch reads kr1 from the file (active,
    as in the ledger) and accepts a check-in on it, as memory decides without the failed
    batch."""
    sequencer, records, statements = _file_run(tmp_path / "partition-0.db")
    retire, later = records[-2], records[-1]
    with pytest.raises(_WriteFailedError):
        _decide_and_fail_to_write(sequencer, retire)
    # the owner restores; the state file is kept (the write failed, not the file)
    sequencer.resume_offset = retire.offset
    statements.clear()
    outcomes = _decide(sequencer, [later._replace(offset=retire.offset)], len(records) - 1)
    assert [_outcome(o) for o in outcomes] == ["accepted"]
    assert _key_result_reads(statements)  # read from the file
    sequencer.state.close()


def test_a_batch_finds_its_sources_by_the_primary_key_not_by_a_scan_of_the_org(
    tmp_path: Path,
) -> None:
    """A state file keeps a ``sequencer_sources`` row per event: the batch's query for its
    sources searches the primary key for each pair, never reads all the org's rows (a cost
    that grew with the partition)."""
    path = tmp_path / "partition-0.db"
    sequencer, records, statements = _file_run(path)
    by_source = [
        raw_submission(
            "CheckInRecorded",
            {"key_result_id": "kr1", "value": i, "confidence": 0.5},
            org_id=ORG,
            key=f"ci{i}",
        )
        for i in range(5)
    ]
    more = intake_of(by_source)
    _decide(sequencer, [r._replace(offset=len(records) + i) for i, r in enumerate(more)], 99)
    queries = [
        q
        for q in statements
        if q.startswith(("SELECT", "WITH")) and "sequencer_sources" in q and "VALUES" in q
    ]
    assert queries
    with sqlite3.connect(path) as db:
        for query in queries:
            plan = " / ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}"))
            assert "PRIMARY KEY (org_id=? AND source=? AND source_event_id=?)" in plan, plan
    sequencer.state.close()


@settings(max_examples=30, deadline=None)
@given(histories(), st.integers(1, 7), st.lists(st.booleans(), max_size=40))
def test_a_state_file_whose_writes_fail_decides_as_memory_and_stays_the_fold(
    lines: list[bytes], batch_size: int, failures: list[bool]
) -> None:
    """Random histories in random batches, each batch's first write failing at random (the
    batch then decided again, on the same state file, as after a restore): every outcome is
    the state in memory's, and the file is the fold of the events written, across a reopen."""
    memory = Sequencer()
    expected = [memory.submit(line, now=NOW) for line in lines]
    records = intake_of(lines)
    failing = iter(failures)
    with tempfile.TemporaryDirectory(prefix="okr-kept-") as tmp:
        path = Path(tmp) / "partition-0.db"
        sequencer = PartitionSequencer(0, 1, state=FileState(path, 0))
        statuses: list[str] = []
        hashes: list[str] = []
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            if next(failing, False):
                resume = sequencer.resume_offset
                with pytest.raises(_WriteFailedError):
                    _decide_and_fail(sequencer, batch)
                sequencer.resume_offset = resume
            with sequencer.deciding(batch, NOW) as output:
                hashes += [accepted.record["hash"] for accepted, _ in output.events]
                ledger_next = len(hashes) if output.events else None
                sequencer.keep(output, ledger_next, 0)
            statuses += [_outcome(o.value) for o in output.outcomes]
        sequencer.state.close()
        assert statuses == [o.status for o in expected]
        written = [o for o in expected if isinstance(o, Accepted)]
        assert hashes == [o.event.hash for o in written]
        again = FileState(path, 0)
        try:
            fold = Sequencer.from_ledger([o.event for o in written]).state
            assert_store_is_the_fold(again.store, path, fold)
        finally:
            again.close()


def _decide_and_fail(sequencer: PartitionSequencer, records: list[IntakeRecord]) -> None:
    with sequencer.deciding(records, NOW):
        raise _WriteFailedError
