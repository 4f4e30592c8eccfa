"""``--as-of T`` resolves T to the last sequence of the org recorded at or before it
(``queries.sequence_as_of``, read from ``event_times`` by its minmax index on the time): exact
also when ``recorded_at`` goes back along the sequence (a clock stepped back), and the same cut
as the parameterized views."""

from datetime import datetime, timedelta

from projections import queries
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, day

MICRO = timedelta(microseconds=1)


def _expected(builder: LedgerBuilder, moment: datetime) -> int:
    return max((e.sequence for e in builder.events() if e.recorded <= moment), default=0)


def _moments(builder: LedgerBuilder) -> list[datetime]:
    times = sorted({e.recorded for e in builder.events()})
    return [times[0] - MICRO, *(m + d for m in times for d in (-MICRO, 0 * MICRO, MICRO))]


def test_the_last_sequence_by_a_time_is_exact_when_the_clock_steps_back(
    open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    builder.skeleton()
    builder.objective("o1")
    builder.key_result("k1", "o1")
    for n in range(1, 6):
        builder.check_in("k1", 10 * n, day(n))
    back = builder.now - timedelta(days=3)  # the clock stepped back three days
    builder.check_in("k1", 70, back - timedelta(hours=1), recorded=back)
    builder.check_in("k1", 80, back, recorded=back + timedelta(seconds=1))
    builder.check_in("k1", 90, day(7), recorded=day(40))  # then forward again
    store = open_store("lookup")
    project(builder, store)
    recorded = [e.recorded for e in builder.events()]
    assert recorded != sorted(recorded)  # the ledger this test is about
    for moment in _moments(builder):
        assert queries.sequence_as_of(store, ORG, moment) == _expected(builder, moment), moment
    assert queries.sequence_as_of(store, ORG, None) == len(recorded)


def test_the_views_cut_the_ledger_where_the_commands_do(
    open_store: StoreFactory, builder: LedgerBuilder
) -> None:
    builder.skeleton()
    builder.objective("o1")
    builder.key_result("k1", "o1")
    builder.check_in("k1", 10, day(2))
    builder.check_in("k1", 20, day(1), recorded=day(1, hour=13))  # recorded before the last
    builder.check_in("k1", 30, day(3))
    store = open_store("cuts")
    project(builder, store)
    for moment in _moments(builder):
        assert _audit_cut(store, moment) == queries.sequence_as_of(store, ORG, moment), moment


def _audit_cut(store: ProjectionStore, moment: datetime) -> int:
    """The last sequence of ``audit_history_at(as_of = moment)``: the views' cut."""
    rows = store.rows(
        "SELECT max(sequence) FROM {db}.audit_history_at(as_of = {m:DateTime64(6, 'UTC')}, "
        "at = NULL) WHERE org_id = {org:String}",
        {"m": moment, "org": ORG},
    )
    return int(rows[0][0]) if rows else 0
