"""GET /v1/orgs/{org}/... answers what the CLI's --json prints; unknown names as the CLI."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from okr_ledger.http.keys import Scope
from tests.http.conftest import Served
from tests.http.support import check_in, cli, make_key, running

TOMORROW = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
"""An ``as_of`` after the demo was recorded (it is recorded when the test runs: two days on,
so that a run collected before midnight and run after it still has one)."""
TIME_DEPENDENT = {"expected_progress", "status", "stale"}
"""Fields that move with the clock between the CLI's run and the server's."""


def _stable(body: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in orjson.loads(line).items() if k not in TIME_DEPENDENT}
        for line in body.splitlines()
    ]


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("/v1/orgs/northwind/progress", ["progress", "--org", "northwind"]),
        (
            f"/v1/orgs/northwind/progress?as_of={TOMORROW}&at=2026-10-20T00:00:00Z",
            ["progress", "--org", "northwind", "--as-of", TOMORROW, "--at", "2026-10-20"],
        ),
        (
            "/v1/orgs/northwind/progress?period=2026-Q4&unit=support",
            ["progress", "--org", "northwind", "--period", "2026-Q4", "--unit", "support"],
        ),
        ("/v1/orgs/northwind/cascade", ["cascade", "--org", "northwind"]),
        (
            f"/v1/orgs/northwind/coverage?as_of={TOMORROW}",
            ["coverage", "--org", "northwind", "--as-of", TOMORROW],
        ),
        (
            "/v1/orgs/northwind/history/onboarding-days",
            ["history", "onboarding-days", "--org", "northwind"],
        ),
        (
            f"/v1/orgs/northwind/cascade?as_of={TOMORROW}&at=2026-10-20",
            ["cascade", "--org", "northwind", "--as-of", TOMORROW, "--at", "2026-10-20"],
        ),
        (
            "/v1/orgs/northwind/coverage?at=2026-10-20T00:00:00Z",
            ["coverage", "--org", "northwind", "--at", "2026-10-20"],
        ),
        (
            f"/v1/orgs/northwind/history/nps?as_of={TOMORROW}",
            ["history", "nps", "--org", "northwind", "--as-of", TOMORROW],
        ),
        (
            "/v1/orgs/northwind/engagement?at=2026-11-10T00:00:00Z",
            ["engagement", "--org", "northwind", "--at", "2026-11-10"],
        ),
        (
            "/v1/orgs/northwind/trend/delight-customers?at=2026-11-10T00:00:00Z&weeks=5",
            ["trend", "delight-customers", "--org", "northwind", "--at", "2026-11-10", "--weeks=5"],
        ),
        (
            "/v1/orgs/northwind/trend/nps?at=2026-11-10T00:00:00Z&daily=true&weeks=3",
            ["trend", "nps", "--org", "northwind", "--at", "2026-11-10", "--daily", "--weeks", "3"],
        ),
        (
            "/v1/orgs/northwind/attention?at=2026-11-10T00:00:00Z",
            ["attention", "--org", "northwind", "--at", "2026-11-10"],
        ),
        ("/v1/orgs/northwind/strategy", ["strategy", "--org", "northwind"]),
        ("/v1/orgs/northwind/history/strategy", ["history", "strategy", "--org", "northwind"]),
        (
            "/v1/orgs/northwind/results?period=2026-Q3",
            ["results", "--org", "northwind", "--period", "2026-Q3"],
        ),
        (
            f"/v1/orgs/northwind/results?as_of={TOMORROW}",
            ["results", "--org", "northwind", "--as-of", TOMORROW],
        ),
    ],
)
def test_the_api_answers_what_the_cli_prints(served: Served, path: str, command: list[str]) -> None:
    done = cli(served.env, *command, "--json")
    assert done.returncode == 0, done.stderr
    with served.server.client(served.reader) as client:
        answer = client.get(path)
        as_array = client.get(path, headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    assert answer.text, path
    assert _stable(answer.text) == _stable(done.stdout)
    assert _stable("\n".join(orjson.dumps(o).decode() for o in as_array.json())) == _stable(
        answer.text
    )


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("/v1/orgs/northwind/history/onboardng-days", ["history", "onboardng-days"]),
        ("/v1/orgs/northwind/progress?unit=salse", ["progress", "--unit", "salse"]),
        ("/v1/orgs/northwind/progress?period=2026-Q5", ["progress", "--period", "2026-Q5"]),
        ("/v1/orgs/northwind/results?period=2026-Q5", ["results", "--period", "2026-Q5"]),
    ],
)
def test_an_unknown_name_is_404_with_the_clis_message_and_suggestions(
    served: Served, path: str, command: list[str]
) -> None:
    done = cli(served.env, *command)
    assert done.returncode == 5
    with served.server.client(served.reader) as client:
        answer = client.get(path)
    assert answer.status_code == 404
    problem = answer.json()
    assert problem["reason_code"] == "unknown_name"
    assert done.stderr.strip() == f"error: {problem['detail']}"
    assert problem["suggestions"]
    assert problem["suggestions"][0] in problem["detail"]


def test_an_org_the_key_names_but_the_ledger_lacks_is_404(served: Served) -> None:
    key = served.key(orgs=("northwind", "northwnd"), scopes=(Scope.READ,), source=None)
    with served.server.client(key) as client:
        answer = client.get("/v1/orgs/northwnd/cascade")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "unknown org 'northwnd'; did you mean 'northwind'?"
    assert answer.json()["suggestions"] == ["northwind"]


@pytest.mark.parametrize(
    "query",
    [
        "as_of=yesterday",
        "as_of=-99999999999d",  # overflowed timedelta
        "at=-1000000d",  # before year 1
        "as_of=0001-01-01T00:00:00%2B01:00",  # before year 1 in UTC
        "at=2300-01-01",  # past ClickHouse's DateTime64
    ],
)
def test_a_malformed_or_out_of_range_time_is_400(served: Served, query: str) -> None:
    with served.server.client(served.reader) as client:
        answer = client.get(f"/v1/orgs/northwind/coverage?{query}")
    assert answer.status_code == 400
    assert answer.json()["reason_code"] == "invalid_parameter"


def test_health_metrics_and_openapi(served: Served) -> None:
    with served.server.client(served.writer) as client:
        client.post("/v1/submissions", content=orjson.dumps(check_in(source_event_id="m1")))
        client.post("/v1/submissions", content=orjson.dumps(check_in(org_id="globex")))
        health = client.get("/healthz")
        metrics = client.get("/metrics").text
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert health.json()["status"] == "ok"
    assert health.json()["runtime"] == "embedded"
    assert 'okr_http_requests_total{method="POST",route="/v1/submissions",status="403"}' in metrics
    assert 'okr_http_submissions_total{reason_code="forbidden",status="rejected"}' in metrics
    assert 'okr_http_request_seconds_bucket{le="0.005",method="POST",route="/v1/submissions"}' in (
        metrics
    )
    assert "okr_http_group_commit_size_count" in metrics
    assert {"/v1/submissions", "/v1/hooks/{name}", "/v1/orgs/{org}/progress"} <= set(spec["paths"])
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
    served: Served, tmp_path: Path
) -> None:
    env = {**served.env, "OKR_HTTP_RATE_LIMIT": "3/minute"}
    key, _ = make_key(served.settings, source=None, scopes=(Scope.READ,))
    other, _ = make_key(served.settings, source=None, scopes=(Scope.READ,))
    with (
        running(env, tmp_path / "limited.log") as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
    ):
        if True:
            auth = {"Authorization": f"Bearer {key}"}
            codes = [client.get("/v1/orgs/northwind/coverage", headers=auth).status_code
                     for _ in range(4)]  # fmt: skip
            refused = client.get("/v1/orgs/northwind/coverage", headers=auth)
            fresh = client.get(
                "/v1/orgs/northwind/coverage", headers={"Authorization": f"Bearer {other}"}
            )
    assert codes == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert refused.json()["reason_code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert fresh.status_code == 200
