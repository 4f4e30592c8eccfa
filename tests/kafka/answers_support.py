"""What the queries answer about an org, to compare a live store with a rebuild of the ledger
(or a rebuild of its prefix): the current-state tables are read when the moment has no
``as_of`` and no ``at``, the history tables otherwise."""

from typing import Any

from events.kafka_client import Connection
from okr_ledger.projection_compare import fingerprint
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections import monitoring, queries
from projections.queries import Moment
from projections.store import ProjectionStore
from tests.kafka.worker_support import open_log

FOCUS_LIMIT = 2


def org_answers(store: ProjectionStore, org_id: str, moment: Moment) -> list[Any]:
    found = queries.progress(store, org_id, moment, FOCUS_LIMIT)
    return [
        found.objectives,
        found.key_results,
        queries.cascade(store, org_id, moment, FOCUS_LIMIT),
        queries.coverage(store, org_id, moment),
        queries.period_results(store, org_id, moment),
        monitoring.engagement(store, org_id, moment),
    ]


def assert_equals_a_rebuild(
    kafka: Connection, topics: dict[str, str], url: str, moment: Moment
) -> None:
    """The live projections at ``url`` (no worker writing them any more), uncut, equal a rebuild
    of the whole ledger in a new database of the same server: every history table, every
    current-state table after ``FINAL``, and every org's answers about ``moment``."""
    log = open_log(kafka, topics)
    try:
        orgs = sorted(log.heads())
        with (
            ProjectionStore.open(url, migrate=False) as live,
            ProjectionStore.open(url, database="rebuilt") as fresh,
        ):
            EmbeddedRunner(log, fresh, Projector()).catch_up()
            assert fresh.positions() == live.positions()
            assert fingerprint(live) == fingerprint(fresh)
            for org in orgs:
                assert org_answers(live, org, moment) == org_answers(fresh, org, moment), org
    finally:
        log.close()
