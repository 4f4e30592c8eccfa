"""What every route uses, made once per server: the runtime's parts, keys, limits, metrics."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from okr_ledger.http.group_commit import GroupCommitter
from okr_ledger.http.hooks import Hook
from okr_ledger.http.keys import KeyRecord, KeyStore, authenticate, read_refusal
from okr_ledger.http.metrics import Metrics
from okr_ledger.http.problems import ProblemError
from okr_ledger.http.rate_limits import RateLimits
from okr_ledger.runtime import ProjectionReader, Runtime
from okr_ledger.settings import Settings
from projections.store import ProjectionStore

T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    runtime: Runtime
    keys: KeyStore
    committer: GroupCommitter
    limits: RateLimits
    hooks: dict[str, Hook]
    metrics: Metrics
    reader: ProjectionReader
    loopback: bool
    """Bound to a loopback address: the pages need no key."""

    def key(self, request: Request) -> KeyRecord:
        """The request's key (401 without a valid one), counted against its limit (429)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        record = authenticate(self.keys, token.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise ProblemError(
                401,
                "unauthorized",
                "send a valid, unrevoked key as `Authorization: Bearer <key>` "
                "(`okr-ledger keys create` makes one)",
                headers={"WWW-Authenticate": 'Bearer realm="okr-ledger"'},
            )
        self.limit(record)
        return record

    def limit(self, record: KeyRecord) -> None:
        wait = self.limits.retry_after(record.key_id)
        if wait is not None:
            raise ProblemError(
                429,
                "rate_limited",
                f"key {record.key_id} is over its rate limit; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )

    def reader_of(self, request: Request, org_id: str) -> KeyRecord:
        """The request's key, which must have the read scope for ``org_id`` (else 403)."""
        record = self.key(request)
        refusal = read_refusal(record, org_id)
        if refusal:
            raise ProblemError(403, "forbidden", refusal)
        return record

    async def read(self, answer: Callable[[ProjectionStore], T]) -> T:
        """``answer(store)`` in a thread, on the projections as up to date as the runtime
        makes them (:meth:`okr_ledger.runtime.Runtime.reader`)."""
        return await run_in_threadpool(self.reader.read, answer)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
