"""``GET /v1/orgs/{org}/progress``, ``/cascade``, ``/coverage``, ``/history/{subject}``,
``/results``.

Each answers exactly what the CLI's ``--json`` prints (:mod:`okr_ledger.query_json`): NDJSON,
one line per row; with ``Accept: application/json``, the same objects as one JSON array. An
unknown org, period, unit or subject is a 404 problem with the CLI's message and suggestions.
Each needs a key with the read scope for that org.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from okr_ledger import query_json
from okr_ledger.http.problems import ProblemError
from okr_ledger.http.services import services
from projections import queries
from projections.queries import Moment
from projections.store import ProjectionStore

router = APIRouter(tags=["reading"])
NDJSON = "application/x-ndjson"
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "NDJSON, one line per row (as the CLI's --json)."},
    400: {"description": "A malformed as_of or at."},
    401: {"description": "No valid key."},
    403: {"description": "The key has no read scope for this org."},
    404: {"description": "Unknown org, period, unit or subject (with suggestions)."},
}
AsOf = Annotated[
    str | None,
    Query(
        description="What the ledger knew at this recorded time: RFC 3339, a date, `now` or "
        "`-3d` (as the CLI's --as-of)."
    ),
]
At = Annotated[
    str | None, Query(description="Values, expected progress and status at this business time.")
]


def moment_of(as_of: str | None, at: str | None = None) -> Moment:
    return Moment(as_of=_parsed(as_of, "as_of"), at=_parsed(at, "at"))


def _parsed(text: str | None, name: str) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        if len(text) > 100:
            raise ValueError(text)
        return query_json.parse_moment(text)
    except ValueError:
        raise ProblemError(
            400,
            "invalid_parameter",
            f"{name}: not a date or time between 1900 and 2299: {text[:100]!r}",
        ) from None


def lines_response(request: Request, lines: list[dict[str, Any]]) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        option = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
        return Response(orjson.dumps(lines, option=option), media_type="application/json")
    return Response(query_json.encode_lines(lines), media_type=NDJSON)


async def _answer(
    request: Request, org: str, answer: Callable[[ProjectionStore], list[dict[str, Any]]]
) -> Response:
    s = services(request)
    s.reader_of(request, org)

    def checked(store: ProjectionStore) -> list[dict[str, Any]]:
        queries.require_org(store, org)
        return answer(store)

    return lines_response(request, await s.read(checked))


@router.get("/v1/orgs/{org}/progress", responses=_RESPONSES)
async def progress(  # noqa: PLR0917 - the query's parameters
    org: str,
    request: Request,
    as_of: AsOf = None,
    at: At = None,
    period: str | None = None,
    unit: str | None = None,
) -> Response:
    """The cascade as a tree (objectives depth-first, each followed by its key results):
    progress, status and confidence; as `okr-ledger progress --org ORG --json`."""
    moment = moment_of(as_of, at)
    limit = services(request).settings.over_focus_limit

    def answer(store: ProjectionStore) -> list[dict[str, Any]]:
        if period is not None:
            queries.require_entity(store, "period", period, [org])
        if unit is not None:
            queries.require_entity(store, "unit", unit, [org])
        found = query_json.progress(store, org, moment, limit, period=period, unit=unit)
        return list(query_json.progress_lines(org, found))

    return await _answer(request, org, answer)


@router.get("/v1/orgs/{org}/cascade", responses=_RESPONSES)
async def cascade(org: str, request: Request, as_of: AsOf = None, at: At = None) -> Response:
    """Alignment: parents, themes reached, links, flags, status; as `okr-ledger cascade
    --json` (with `--as-of`, `--at`)."""
    moment = moment_of(as_of, at)
    limit = services(request).settings.over_focus_limit
    return await _answer(request, org, lambda store: query_json.cascade(store, org, moment, limit))


@router.get("/v1/orgs/{org}/coverage", responses=_RESPONSES)
async def coverage(org: str, request: Request, as_of: AsOf = None, at: At = None) -> Response:
    """Per period and active theme: objectives, key results, progress; as `coverage --json`
    (with `--as-of`, `--at`)."""
    moment = moment_of(as_of, at)
    return await _answer(request, org, lambda store: query_json.coverage_lines(store, org, moment))


@router.get("/v1/orgs/{org}/history/{subject}", responses=_RESPONSES)
async def history(org: str, subject: str, request: Request, as_of: AsOf = None) -> Response:
    """Every event about the subject or naming it; as `okr-ledger history SUBJECT --org ORG
    --json`."""
    moment = moment_of(as_of)
    return await _answer(
        request, org, lambda store: query_json.history_lines(store, [org], subject, moment)[org]
    )


@router.get("/v1/orgs/{org}/results", responses=_RESPONSES)
async def results(
    org: str, request: Request, period: str | None = None, as_of: AsOf = None
) -> Response:
    """Grades of closed periods (only `period`'s if given), as of each one's latest close; as
    `okr-ledger results --org ORG [--period P] --json`."""
    moment = moment_of(as_of)

    def answer(store: ProjectionStore) -> list[dict[str, Any]]:
        if period is not None:
            queries.require_entity(store, "period", period, [org])
        return query_json.results_lines(store, org, moment, period)

    return await _answer(request, org, answer)
