"""A projection store under test: every answer it gives, its parts, a database of its own."""

from collections.abc import Iterator
from uuid import uuid4

from projections import queries
from projections.queries import Moment
from projections.store import ProjectionStore
from tests.projections.ledgers import ORG, day


def answers(store: ProjectionStore) -> list[object]:
    moment = Moment(now=day(30))
    found = queries.progress(store, ORG, moment, 5)
    return [found.objectives, found.key_results, queries.coverage(store, ORG, moment)]


def store_in_own_database(url: str) -> Iterator[ProjectionStore]:
    store = ProjectionStore.open(url, database=f"okr_test_{uuid4().hex[:12]}")
    yield store
    store.client.command(f"DROP DATABASE IF EXISTS {store.database}")
    store.close()


def parts_without(store: ProjectionStore, table: str, projection: str) -> int:
    """Active parts of ``table`` with rows that lack ``projection`` (a part a DELETE emptied
    has none, and is removed rather than merged)."""
    return int(
        store.rows(
            "SELECT countIf(NOT has(projections, {p:String})) FROM system.parts "
            "WHERE database = {db:String} AND table = {table:String} AND active AND rows > 0",
            {"p": projection, "db": store.database, "table": table},
        )[0][0]
    )
