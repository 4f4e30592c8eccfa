"""The dashboard: server-rendered pages (Jinja2), read-only, on the API's own queries.

- ``/``: the orgs the viewer may read; ``/orgs/{org}``: the cascade tree with progress bars,
  status colours and confidence, the alignment warnings and the stale key results, and an
  as-of date picker (a plain GET form); ``/orgs/{org}/key-results/{id}``: a key result's
  check-ins as an SVG chart and its audit trail.
- On a loopback bind, a request whose ``Host`` is loopback too needs no key (a page of another
  site that rebinds its name to 127.0.0.1 still has its own name as ``Host``), unless a reverse
  proxy forwarded it (``Forwarded``, ``X-Forwarded-For``, ``X-Forwarded-Host``, ``X-Real-IP``:
  nginx's default sends a loopback ``Host``). Otherwise a read
  key, entered once on ``/signin``, is kept in a ``Secure``, ``HttpOnly``, ``SameSite=Strict``
  cookie and checked against the key store on every page (revoking it signs out at once).
- The sign-in form is CSRF-safe: a random token in a ``SameSite=Strict`` cookie must equal the
  form's hidden field, and a cross-site ``Sec-Fetch-Site`` or ``Origin`` is refused.
"""

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from events.outcomes import Oversized
from okr_ledger import monitor_render, query_json
from okr_ledger import progress_render as render
from okr_ledger.http import charts
from okr_ledger.http.bodies import read_body
from okr_ledger.http.keys import KeyRecord, Scope, authenticate
from okr_ledger.http.problems import ProblemError
from okr_ledger.http.reading import AsOf, moment_of
from okr_ledger.http.services import Services, services
from projections import monitoring, queries
from projections.queries import Moment, Record
from projections.query_credentials import same_text
from projections.store import ProjectionStore
from schemas.errors import UnknownNameError

HERE = Path(__file__).parent
KEY_COOKIE = "okr_key"
CSRF_COOKIE = "okr_csrf"
SESSION_SECONDS = 8 * 3600
SIGNIN_MAX_BYTES = 4096
"""The largest sign-in form body read (a key is 60 characters, the CSRF token 43)."""
SIGNIN_MAX_FIELDS = 8
SIGNIN_MAX_KEY_CHARS = 200

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(
    STATUS_LABEL=render.STATUS_LABEL, FLAG_TEXT=render.FLAG_TEXT, percent=lambda v: f"{v:.0%}"
)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


class SignInRequiredError(Exception):
    """The page needs a read key: answered with a redirect to the sign-in page."""


def _loopback_host(request: Request) -> bool:
    from okr_ledger.http.app import is_loopback

    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    return is_loopback(host)


FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
"""Headers a reverse proxy adds: a request carrying one came from another machine through a
proxy on this one (which connects from loopback, and may send a loopback ``Host``)."""


def _from_this_machine(request: Request) -> bool:
    return _loopback_host(request) and not any(h in request.headers for h in FORWARDING_HEADERS)


def viewer(request: Request) -> KeyRecord | None:
    """``None`` for open access (loopback), else the signed-in read key."""
    s = services(request)
    if s.loopback and _from_this_machine(request):
        return None
    record = authenticate(s.keys, request.cookies.get(KEY_COOKIE, ""))
    if record is None or Scope.READ not in record.scopes:
        raise SignInRequiredError
    s.limit(record)
    return record


def _may_read(record: KeyRecord | None, org: str) -> None:
    if record is not None and org not in record.orgs:
        raise ProblemError(403, "forbidden", f"key {record.key_id} may not read org {org!r}")


async def _page(
    request: Request, template: str, org: str | None, build: Callable[[ProjectionStore], Any]
) -> Response:
    try:
        record = viewer(request)
    except SignInRequiredError:
        return RedirectResponse("/signin", 303)
    if org is not None:
        _may_read(record, org)
    s = services(request)
    try:
        context = await s.read(build)
    except UnknownNameError as error:
        context = {"error": str(error)}
        return templates.TemplateResponse(request, "missing.html", context, status_code=404)
    context.update(signed_in=record is not None, org=org)
    return templates.TemplateResponse(request, template, context)


@router.get("/")
async def home(request: Request) -> Response:
    try:
        record = viewer(request)
    except SignInRequiredError:
        return RedirectResponse("/signin", 303)
    orgs = await services(request).read(queries.org_ids)
    if record is not None:
        orgs = [o for o in orgs if o in record.orgs]
    context = {"orgs": orgs, "signed_in": record is not None, "org": None}
    return templates.TemplateResponse(request, "home.html", context)


def org_view(store: ProjectionStore, org: str, moment: Moment, limit: int) -> dict[str, Any]:
    """Everything the org page shows, from the API's queries, read together
    (:class:`projections.queries.Reads`): the ledger position as of ``moment`` resolved once,
    the objectives and key results that several sections show read once."""
    queries.require_org(store, org)
    reads = queries.Reads(store)
    found = query_json.progress(store, org, moment, limit, reads=reads)
    coverage = queries.coverage(store, org, moment, reads=reads)
    tree: list[tuple[Record, list[Record]]] = list(render.ordered(found))
    return {
        "tree": tree,
        "warnings": render.warnings(found.objectives, coverage),
        "stale": [kr for kr in found.key_results if kr["stale"] and not kr["retired"]],
        "results": query_json.results_lines(store, org, moment, reads=reads),
        "moment": moment,
        **monitoring_view(store, org, moment, limit, reads),
    }


def monitoring_view(
    store: ProjectionStore, org: str, moment: Moment, limit: int, reads: queries.Reads
) -> dict[str, Any]:
    """The org page's monitoring sections: attention, engagement by owner, the strategy."""
    return {
        "attention": query_json.attention_lines(store, org, moment, limit, reads=reads),
        "attention_text": monitor_render.ATTENTION_TEXT,
        "engagement": [
            row
            for row in query_json.engagement_lines(store, org, moment, reads=reads)
            if row["group"] == "owner"
        ],
        "strategy": monitoring.strategy(store, org, moment, reads=reads),
    }


@router.get("/orgs/{org}")
async def org_page(org: str, request: Request, as_of: AsOf = None) -> Response:
    moment = moment_of(as_of)
    limit = services(request).settings.over_focus_limit
    context_as_of = as_of or ""

    def build(store: ProjectionStore) -> dict[str, Any]:
        return {**org_view(store, org, moment, limit), "as_of": context_as_of}

    return await _page(request, "org.html", org, build)


@router.get("/orgs/{org}/key-results/{key_result_id}")
async def key_result_page(
    org: str, key_result_id: str, request: Request, as_of: AsOf = None
) -> Response:
    moment = moment_of(as_of)
    context_as_of = as_of or ""

    def build(store: ProjectionStore) -> dict[str, Any]:
        queries.require_org(store, org)
        known = {kr["key_result_id"]: kr for kr in queries.key_results(store, org, moment)}
        if key_result_id not in known:
            raise UnknownNameError("key result", key_result_id, known)
        kr = known[key_result_id]
        found = charts.points(queries.check_ins(store, org, key_result_id, moment))
        limit = services(request).settings.over_focus_limit
        trend = query_json.trend_lines(store, org, key_result_id, moment, limit)
        return {
            "kr": kr,
            "chart": charts.chart(kr, found),
            "trend": trend,
            "trend_chart": charts.trend_chart(trend),
            "sparkline": monitoring.sparkline([p["progress"] for p in trend]),
            "points": found,
            "history": queries.history(store, org, key_result_id, moment),
            "as_of": context_as_of,
            "moment": moment,
        }

    return await _page(request, "key_result.html", org, build)


def _same_site(request: Request) -> bool:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def _cookie(response: Response, name: str, value: str, path: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=True, httponly=True, samesite="strict"
    )


@router.get("/signin")
async def signin_form(request: Request) -> Response:
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(request, "signin.html", {"csrf": token, "error": ""})
    _cookie(response, CSRF_COOKIE, token, "/signin", 3600)
    return response


async def _sign_in_form(request: Request) -> dict[str, str]:
    """The sign-in form's fields, read within :data:`SIGNIN_MAX_BYTES` (anyone may post it,
    without a key): URL-encoded only (a multipart form's files would be spooled to disk), at
    most a few fields, the first of each name kept."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise ProblemError(
            415, "unsupported_media_type", "the sign-in form is application/x-www-form-urlencoded"
        )
    body = await read_body(request, SIGNIN_MAX_BYTES)
    if isinstance(body, Oversized):
        raise ProblemError(413, "too_large", f"the sign-in form is over {SIGNIN_MAX_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=SIGNIN_MAX_FIELDS)
    except ValueError:
        raise ProblemError(
            400, "invalid_parameter", "the sign-in form has too many fields"
        ) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


@router.post("/signin")
async def signin(request: Request) -> Response:
    fields = await _sign_in_form(request)
    key, csrf = fields.get("key", ""), fields.get("csrf", "")
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not (expected and same_text(expected, csrf) and _same_site(request)):
        raise ProblemError(403, "forbidden", "the sign-in form expired or came from another site")
    s: Services = services(request)
    record = authenticate(s.keys, key.strip()) if len(key) <= SIGNIN_MAX_KEY_CHARS else None
    if record is None or Scope.READ not in record.scopes:
        context = {"csrf": expected, "error": "That is not a valid read key."}
        return templates.TemplateResponse(request, "signin.html", context, status_code=401)
    response = RedirectResponse("/", 303)
    _cookie(response, KEY_COOKIE, key.strip(), "/", SESSION_SECONDS)
    response.delete_cookie(CSRF_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    if not _same_site(request):
        raise ProblemError(403, "forbidden", "cross-site sign-out refused")
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(KEY_COOKIE, path="/")
    return response
