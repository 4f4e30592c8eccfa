"""The CLI against a Kafka ledger on the test's topics: its environment, a run of `okr-ledger`,
its NDJSON output."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from events.kafka_client import Connection
from tests.kafka.conftest import TEST_PARTITIONS

OKR_LEDGER = Path(sys.executable).parent / "okr-ledger"


def kafka_env(kafka: Connection, topics: dict[str, str], tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
    return env | {
        "OKR_LEDGER_URL": f"kafka://{kafka.servers[0]}",
        "OKR_KAFKA_TOPIC_INTAKE": topics["intake"],
        "OKR_KAFKA_TOPIC_LEDGER": topics["ledger"],
        "OKR_KAFKA_TOPIC_REJECTIONS": topics["rejections"],
        "OKR_KAFKA_TOPIC_OUTCOMES": topics["outcomes"],
        "OKR_KAFKA_PARTITIONS": str(TEST_PARTITIONS),
        "OKR_DATA_DIR": str(tmp / "kafka-data"),
    }


def okr(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run(
        [str(OKR_LEDGER), *args], env=env, capture_output=True, timeout=60, check=False
    )


def lines(stdout: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]
