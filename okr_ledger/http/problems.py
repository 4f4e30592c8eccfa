"""Errors as RFC 9457 problem details (``application/problem+json``) with a ``reason_code``.

A refused submission's problem carries its ``outcome`` (exactly what the CLI's ``--outcomes``
writes); other problems name what went wrong in ``reason_code`` (``unauthorized``,
``rate_limited``, ``unknown_name``...).
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """Raised by a route: answered as a problem, nothing else happens."""

    def __init__(
        self,
        status: int,
        reason_code: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.reason_code, self.detail = status, reason_code, detail
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        return problem(self.status, self.reason_code, self.detail, self.headers, **self.extra)


def problem(
    status: int,
    reason_code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    document = {
        "type": f"urn:okr-ledger:problem:{reason_code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "reason_code": reason_code,
        **extra,
    }
    return Response(orjson.dumps(document), status, dict(headers or {}), PROBLEM_JSON)
