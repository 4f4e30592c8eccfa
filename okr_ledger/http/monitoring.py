"""``GET /v1/orgs/{org}/engagement``, ``/trend/{subject}``, ``/attention``, ``/strategy``.

As :mod:`okr_ledger.http.reading`: each answers exactly what the CLI's ``--json`` prints
(NDJSON; a JSON array with ``Accept: application/json``), takes ``as_of`` (and ``at`` where the
answer depends on business time), and needs a key with the read scope for the org.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from okr_ledger import query_json
from okr_ledger.http.reading import _RESPONSES, AsOf, At, _answer, moment_of
from okr_ledger.http.services import services
from projections import queries
from projections.store import ProjectionStore

router = APIRouter(tags=["monitoring"])


@router.get("/v1/orgs/{org}/engagement", responses=_RESPONSES)
async def engagement(
    org: str, request: Request, as_of: AsOf = None, at: At = None, period: str | None = None
) -> Response:
    """Per owner and per unit: key results owned, check-ins in 7 and 28 days, share within
    their cadence, last check-in; as `okr-ledger engagement --org ORG --json`."""
    moment = moment_of(as_of, at)

    def answer(store: ProjectionStore) -> list[dict[str, Any]]:
        if period is not None:
            queries.require_entity(store, "period", period, [org])
        return query_json.engagement_lines(store, org, moment, period=period)

    return await _answer(request, org, answer)


@router.get("/v1/orgs/{org}/trend/{subject}", responses=_RESPONSES)
async def trend(  # noqa: PLR0917 - the query's parameters
    org: str,
    subject: str,
    request: Request,
    as_of: AsOf = None,
    at: At = None,
    weeks: Annotated[int, Query(ge=1, le=104, description="How many weeks (or days).")] = 8,
    daily: bool = False,
) -> Response:
    """The progress of a key result or objective week by week (or day by day); as
    `okr-ledger trend SUBJECT --org ORG --json`."""
    moment = moment_of(as_of, at)
    limit = services(request).settings.over_focus_limit

    def answer(store: ProjectionStore) -> list[dict[str, Any]]:
        return query_json.trend_lines(store, org, subject, moment, limit, count=weeks, daily=daily)

    return await _answer(request, org, answer)


@router.get("/v1/orgs/{org}/attention", responses=_RESPONSES)
async def attention(org: str, request: Request, as_of: AsOf = None, at: At = None) -> Response:
    """What needs someone this week; as `okr-ledger attention --org ORG --json`."""
    moment = moment_of(as_of, at)
    limit = services(request).settings.over_focus_limit
    return await _answer(
        request, org, lambda store: query_json.attention_lines(store, org, moment, limit)
    )


@router.get("/v1/orgs/{org}/strategy", responses=_RESPONSES)
async def strategy(org: str, request: Request, as_of: AsOf = None) -> Response:
    """The strategy as it stood (one line; none before it was defined); as
    `okr-ledger strategy --org ORG --json`."""
    moment = moment_of(as_of)
    return await _answer(request, org, lambda store: query_json.strategy_lines(store, org, moment))
