"""The worker projects the ledger, and serves the query commands of another process."""

import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from events.kafka_client import Connection
from events.ledger import Ledger
from events.sqlite_log import SqliteEventLog
from okr_ledger.demo import demo_submissions
from projections.query_credentials import TOKEN_FILE
from tests.kafka.projector_support import cli, json_lines, projecting_worker, wait_projected
from tests.kafka.worker_support import Submitter

pytestmark = pytest.mark.kafka


def test_queries_while_the_worker_runs_equal_the_embedded_runtime(
    kafka: Connection, topics: dict[str, str], tmp_path: Path
) -> None:
    raws = demo_submissions()
    embedded_dir = tmp_path / "embedded"
    embedded_dir.mkdir()
    ledger = Ledger(SqliteEventLog(embedded_dir / "ledger.db"))
    list(ledger.submit_many((raw, None) for raw in raws))
    heads = {org: head.sequence for org, head in ledger.log.heads().items()}
    ledger.log.close()
    embedded = {"OKR_DATA_DIR": str(embedded_dir)}

    worker = projecting_worker(kafka, topics, tmp_path)
    worker.start()
    submitter = Submitter(kafka, topics["intake"])
    try:
        worker.wait_ready(1)
        submitter.send(raws)
        wait_projected(worker, heads)
        on_kafka = {k: v for k, v in worker.env.items() if k.startswith("OKR_")}
        for command in ("progress", "cascade", "coverage"):
            served = json_lines(on_kafka, command)
            assert served, command
            assert served == json_lines(embedded, command), command
        for unknown in (
            ("progress", "--unit", "salse"),
            ("history", "onboardng-days", "--json"),
            ("verify", "--org", "northwnd"),
            ("rejections", "--org", "northwin"),
        ):
            on_both = [cli(env, *unknown) for env in (on_kafka, embedded)]
            assert [(done.returncode, done.stdout) for done in on_both] == [(5, "")] * 2, unknown
            assert on_both[0].stderr == on_both[1].stderr, unknown
            assert on_both[0].stderr.startswith("error: unknown "), unknown
        written = cli(on_kafka, "sql", "INSERT INTO checkpoints (stream) VALUES ('x')")
        assert written.returncode != 0
        assert "read-only" in written.stderr
        token = Path(on_kafka["OKR_DATA_DIR"]) / TOKEN_FILE  # made by the worker, owner only
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        port = on_kafka["OKR_WORKER_WEB_PORT"]
        stranger = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"SELECT 1")
        with pytest.raises(urllib.error.HTTPError) as refused_stranger:
            urllib.request.urlopen(stranger, timeout=10)
        assert refused_stranger.value.code == 401
    finally:
        submitter.close()
        worker.stop()
    refused = cli(on_kafka, "progress")
    assert refused.returncode == 1
    assert "no worker answers" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
