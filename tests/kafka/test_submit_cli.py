"""``okr-ledger submit``, ``verify``, ``export``, ``rejections`` and ``init`` on Kafka, against
the same commands on the embedded ledger, with the worker as a subprocess."""

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from events.kafka_client import Admin, Connection
from tests.builders import org_setup, raw
from tests.kafka.cli_support import OKR_LEDGER, kafka_env, lines, okr
from tests.kafka.conftest import TEST_PARTITIONS
from tests.kafka.worker_support import running_worker

pytestmark = pytest.mark.kafka

VARYING = {"recorded_at", "hash", "prev_hash"}
"""What may differ between two runtimes given the same submissions."""


def embedded_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
    return env | {"OKR_DATA_DIR": str(tmp / "embedded-data")}


def stable(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k not in VARYING} for d in documents]


def unordered(documents: list[dict[str, Any]]) -> list[bytes]:
    """Orgs interleave differently on the two runtimes (each org's order is the same)."""
    return sorted(orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in stable(documents))


def mixed_file(path: Path) -> Path:
    """Two orgs, and every kind of outcome: invalid JSON, no org, duplicates, a conflict..."""
    setup = org_setup("acme") + org_setup("globex")
    bad = [
        b"{not json",
        b'{"type": "ThemeAdded", "data": {}}',
        b"[1, 2]",
        setup[1],  # a duplicate
        raw("ThemeAdded", {"theme_id": "t9", "name": "Other"}, org_id="acme", key="k-conflict"),
        raw("ThemeAdded", {"theme_id": "t9", "name": "Changed"}, org_id="acme", key="k-conflict"),
        raw("CheckInRecorded", {"key_result_id": "nope", "value": 1}, org_id="globex"),
        raw("NoSuchType", {}, org_id="acme"),
    ]
    path.write_bytes(b"\n".join([*setup[:5], b"", *bad[:3], *setup[5:], *bad[3:]]) + b"\n")
    return path


def test_submit_verify_export_rejections_match_the_embedded_ledger(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    source = mixed_file(tmp_path / "mixed.ndjson")
    on_kafka, embedded = kafka_env(kafka, topics, tmp_path), embedded_env(tmp_path)
    expected = okr(embedded, "submit", str(source), "--json", "--outcomes", str(tmp_path / "e"))
    with running_worker(kafka, topics, tmp_path) as worker:
        worker.wait_ready(1)
        got = okr(on_kafka, "submit", str(source), "--json", "--outcomes", str(tmp_path / "k"))
        again = okr(on_kafka, "submit", str(source), "--json")
    assert (got.returncode, expected.returncode) == (3, 3), got.stderr.decode()
    assert orjson.loads(got.stdout) == orjson.loads(expected.stdout)
    assert orjson.loads(got.stdout)["rejected_by_reason"]["invalid_json"] == 2
    kafka_outcomes = lines((tmp_path / "k").read_bytes())
    assert stable(kafka_outcomes) == stable(lines((tmp_path / "e").read_bytes()))
    assert [o["line"] for o in kafka_outcomes if o["status"] == "rejected"][:2] == [7, 8]
    again_embedded = okr(embedded, "submit", str(source), "--json")
    assert again.returncode == again_embedded.returncode == 3
    assert orjson.loads(again.stdout) == orjson.loads(again_embedded.stdout)
    assert orjson.loads(again.stdout)["accepted"] == 0

    verified, reference = okr(on_kafka, "verify", "--json"), okr(embedded, "verify", "--json")
    assert verified.returncode == reference.returncode == 0, verified.stderr.decode()
    for report in (got_verify := orjson.loads(verified.stdout))["orgs"]:
        report.pop("head_hash")
    for report in (expected_verify := orjson.loads(reference.stdout))["orgs"]:
        report.pop("head_hash")
    assert got_verify == expected_verify
    assert [r["events"] for r in got_verify["orgs"]] == [8, 7]
    for command in (["export"], ["rejections", "--json"]):
        answer, reference = okr(on_kafka, *command), okr(embedded, *command)
        assert answer.returncode == reference.returncode == 0, answer.stderr.decode()
        assert unordered(lines(answer.stdout)) == unordered(lines(reference.stdout)), command


def test_submit_without_a_worker_says_so_and_exits_1(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    env = kafka_env(kafka, topics, tmp_path) | {"OKR_SUBMIT_TIMEOUT_SECONDS": "1"}
    result = subprocess.run(
        [str(OKR_LEDGER), "submit", "-"],
        input=b"\n".join(org_setup("acme")[:3]),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    message = result.stderr.decode()
    assert "3 of 3 submissions have no outcome after 1s" in message
    assert "okr-ledger worker" in message
    assert len(message.strip().splitlines()) == 1, message


def test_init_creates_the_topics_and_can_run_again(kafka: Connection, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:12]
    topics = {
        role: f"init.{suffix}.{role}" for role in ("intake", "ledger", "rejections", "outcomes")
    }
    env = kafka_env(kafka, topics, tmp_path)
    first, second = okr(env, "init"), okr(env, "init")
    assert first.returncode == second.returncode == 0, first.stderr.decode()
    assert b"(created)" in first.stdout
    assert b"(created)" not in second.stdout
    assert b"migration" in second.stdout
    admin = Admin(kafka)
    try:
        assert set(topics.values()) <= admin.topics()
        assert admin.partition_count(topics["ledger"]) == TEST_PARTITIONS
        assert admin.partition_count(topics["rejections"]) == TEST_PARTITIONS
        assert admin.topic_configs(topics["ledger"]).get("retention.ms", "-1") == "-1"
    finally:
        admin.close()
