"""Webhook mappings: checked when the server starts, applied with JMESPath."""

from pathlib import Path
from typing import Any

import orjson
import pytest

from okr_ledger.http.hooks import load_hooks, parse_hook
from schemas.errors import ConfigurationError
from tests.http.support import HOOKS, JIRA_PAYLOAD, cli

GOOD: dict[str, Any] = {
    "type": "CheckInRecorded",
    "envelope": {
        "org_id": "'northwind'",
        "occurred_at": "from_epoch_ms(timestamp)",
        "actor": "user.accountId",
        "source_event_id": "issue.key",
    },
    "data": {"key_result_id": "issue.fields.customfield_10042", "value": "v", "confidence": "c"},
}


def test_the_jira_mapping_builds_the_check_in() -> None:
    hooks = load_hooks(HOOKS)
    payload = orjson.loads(JIRA_PAYLOAD.read_bytes())
    assert hooks["jira-check-in"].submission(payload, "jira") == {
        "type": "CheckInRecorded",
        "org_id": "northwind",
        "occurred_at": "2026-11-20T10:00:00Z",
        "actor": "5b10ac8d82e05b22cc7d4ef5",
        "source_event_id": "OKR-17:1795168800000",
        "source": "jira",
        "data": {
            "key_result_id": "nps",
            "value": 44,
            "confidence": 0.85,
            "comment": "Jira OKR-17 updated by Mia Krystof",
        },
    }


def test_the_example_file_is_the_tested_mapping() -> None:
    example = Path(__file__).parents[2] / "examples" / "hooks.toml"
    assert load_hooks(example)["jira-check-in"] == load_hooks(HOOKS)["jira-check-in"]


def test_what_finds_nothing_is_left_out_for_the_rules_to_name() -> None:
    hook = parse_hook("h", GOOD)
    found = hook.submission({"timestamp": "not a number", "user": {}}, None)
    assert found == {"type": "CheckInRecorded", "org_id": "northwind", "data": {}}


def test_an_expression_the_payload_nests_too_deep_for_finds_nothing() -> None:
    """``to_string`` of a value nested ~1,000 levels (orjson reads 1,024) exceeds Python's
    recursion limit in the JSON encoder JMESPath uses: the field is left out, not a 500."""
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    envelope = {**GOOD["envelope"], "actor": "to_string(timestamp)"}
    found = parse_hook("h", {**GOOD, "envelope": envelope}).submission({"timestamp": deep}, None)
    assert "actor" not in found
    assert found["org_id"] == "northwind"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "CheckInDeleted"}, "'CheckInDeleted' is not an event type"),
        ({"envelope": {**GOOD["envelope"], "orgid": "'x'"}}, "unknown fields ['orgid']"),
        ({"data": {**GOOD["data"], "valu": "v"}}, "unknown fields ['valu']"),
        ({"data": {"value": "v", "confidence": "c"}}, "data.key_result_id"),
        ({"envelope": {"org_id": "'x'", "actor": "a", "source_event_id": "s"}}, "occurred_at"),
        (
            {"envelope": {k: v for k, v in GOOD["envelope"].items() if k != "source_event_id"}},
            "envelope.source_event_id (or event_id)",
        ),
        (
            {"data": {**GOOD["data"], "value": "issue.[fields"}},
            "hooks.h.data.value: not a JMESPath",
        ),
        ({"data": {**GOOD["data"], "value": 7}}, "expected a JMESPath expression"),
        ({"mapping": {}}, "unknown keys ['mapping']"),
    ],
)
def test_a_bad_mapping_is_refused_naming_what_is_wrong(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_hook("h", {**GOOD, **change})
    assert message in str(raised.value)


def test_the_server_does_not_start_with_a_bad_hooks_file(tmp_path: Path) -> None:
    bad = tmp_path / "hooks.toml"
    bad.write_text('[hooks.x]\ntype = "CheckInRecorded"\n')
    done = cli({"OKR_DATA_DIR": str(tmp_path), "OKR_HTTP_HOOKS_FILE": str(bad)}, "serve")
    assert done.returncode == 1
    assert done.stderr.startswith("error: hooks.x: required fields not mapped: envelope.org_id")
    assert "Traceback" not in done.stderr
