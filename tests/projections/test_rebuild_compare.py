"""The comparison of `rebuild` beside live projections: within the same per-org prefix."""

from pathlib import Path
from typing import cast

import pytest

from okr_ledger.live_rebuild import live_limits, replay
from okr_ledger.projection_compare import (
    ROW_HASH,
    TEXT_ROW_HASH,
    Limits,
    describe_difference,
    differing,
    differing_current,
    fingerprint,
    row_hash,
)
from processors.projector import Projector
from processors.runner import EmbeddedRunner
from projections.store import ProjectionStore
from tests.projections.conftest import StoreFactory, project
from tests.projections.ledgers import ORG, LedgerBuilder, copy_prefix, day


def small(builder: LedgerBuilder, check_ins: int) -> None:
    builder.skeleton(themes=("growth",))
    builder.objective("o", theme_ids=["growth"])
    builder.key_result("k", "o")
    for n in range(check_ins):
        builder.check_in("k", n, day(n))


def project_to(cut: int, builder: LedgerBuilder, store: ProjectionStore, tmp_path: Path) -> None:
    """Project ``builder``'s first ``cut`` events into ``store`` (a checkpoint there)."""
    prefix = copy_prefix(builder.events()[:cut], tmp_path / f"prefix-{cut}.db")
    try:
        EmbeddedRunner(prefix, store, Projector()).catch_up()
    finally:
        prefix.close()


def test_a_live_store_ahead_of_the_cut_equals_a_rebuild_up_to_it(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """The cut is a live checkpoint; the worker projected on beyond it (the key result's and
    the objective's current rows changed again there)."""
    small(builder, 6)
    live = open_store("live")
    head = len(builder.events())
    project_to(head - 3, builder, live, tmp_path)
    project(builder, live)
    assert live.positions()[ORG] == head
    limits = Limits({ORG: head - 3})
    fresh = open_store("fresh")
    replayed: list[int] = []
    assert replay(builder.log, fresh, limits, replayed.append) == head - 3 == sum(replayed)
    assert fresh.positions() == {ORG: head - 3}
    assert differing(fingerprint(live, limits), fingerprint(fresh, limits)) == []
    assert differing_current(live, fresh, limits) == []
    uncut = differing(fingerprint(live), fingerprint(fresh))
    assert {"check_in_versions", "key_results_now", "objectives_now"} <= set(uncut)


def test_the_current_state_within_the_cut_is_compared_entity_by_entity(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    """A key result's latest row within the cut counts (FINAL would show the one beyond it).
    One the live store changed again beyond the cut is left out: a merge may have dropped its
    row at the cut (review30: a healthy live store was reported different)."""
    small(builder, 3)
    builder.key_result("k2", "o")
    builder.check_in("k2", 1, day(1))
    cut = len(builder.events())
    for n in range(3, 6):
        builder.check_in("k", n, day(n))  # k, and so its objective, change beyond the cut
    live, fresh = open_store("live"), open_store("fresh")
    project_to(cut, builder, live, tmp_path)
    project(builder, live)
    limits = Limits({ORG: cut})
    replay(builder.log, fresh, limits, lambda _: None)
    db = live.database
    assert differing_current(live, fresh, limits) == []
    for table in ("key_results_now", "objectives_now"):  # the rows at the cut merged away
        live.client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    at_cut = (
        f"SELECT count() FROM {db}.key_results_now WHERE key_result_id = 'k' AND sequence <= {cut}"
    )
    assert live.rows(at_cut) == [(0,)]
    assert differing(fingerprint(live, limits), fingerprint(fresh, limits)) == []
    assert differing_current(live, fresh, limits) == []
    live.client.command(
        f"ALTER TABLE {db}.key_results_now UPDATE title = 'tampered' "
        "WHERE key_result_id = 'k2' SETTINGS mutations_sync = 1"
    )
    assert differing_current(live, fresh, limits) == [
        "key_results_now: 1 entities differ within the cut (0 only in the live projections, "
        "0 only in the rebuild)"
    ]


def test_the_cut_is_the_live_checkpoints_and_problems_are_reported(
    tmp_path: Path, builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    small(builder, 4)
    live = open_store("live")
    project(builder, live)
    at = live.positions()[ORG]
    builder.check_in("k", 9, day(9))  # not projected yet: the live store is behind
    limits, problems, not_projected = live_limits(live, builder.log)
    assert (limits, problems, not_projected) == (Limits({ORG: at}, (0,)), [], [])

    shorter = copy_prefix(builder.events()[: at - 2], tmp_path / "shorter.db")
    try:
        limits, problems, _ = live_limits(live, shorter)
    finally:
        shorter.close()
    assert limits == Limits({ORG: at - 2}, (0,))
    assert problems == [f"{ORG}: the live projections are at sequence {at}, the ledger at {at - 2}"]


def test_a_changed_row_is_counted_on_both_sides(
    builder: LedgerBuilder, open_store: StoreFactory
) -> None:
    small(builder, 2)
    live, fresh = open_store("live"), open_store("fresh")
    project(builder, live)
    project(builder, fresh)
    tamper(live)
    limits = Limits(live.positions())
    found = differing(fingerprint(live, limits), fingerprint(fresh, limits))
    assert found == ["objective_versions"]
    assert describe_difference(live, fresh, "objective_versions", limits) == (
        "objective_versions: 1 rows only in the live projections, 1 only in the rebuild"
    )


def tamper(store: ProjectionStore) -> None:
    store.client.command(
        f"ALTER TABLE {store.database}.objective_versions UPDATE title = 'tampered' "
        f"WHERE sequence = (SELECT min(sequence) FROM {store.database}.objective_versions) "
        "SETTINGS mutations_sync = 1"
    )


@pytest.mark.parametrize("hash_", [ROW_HASH, TEXT_ROW_HASH])
def test_the_row_hash_tells_apart_what_a_text_form_would(
    open_store: StoreFactory, hash_: str
) -> None:
    """Both row hashes (by value, and the text form older servers get) tell apart a NULL and
    an empty string, a zero or the epoch, -0.0 and 0.0, values shifted between columns, an
    array's order; a duplicate row does not count."""
    store = open_store("hashes")
    db = store.database
    store.client.command(
        f"CREATE TABLE {db}.probe (a Nullable(String), b String, c Array(String), "
        "d Nullable(Float64), e Nullable(DateTime64(6, 'UTC')), f LowCardinality(String)) "
        "ENGINE = MergeTree ORDER BY tuple()"
    )
    rows = [
        "(NULL, 'x', [], NULL, NULL, '')",
        "('', 'x', [], NULL, NULL, '')",
        "('a', 'bx', [], NULL, NULL, '')",
        "('ab', 'x', [], NULL, NULL, '')",
        "('', 'x', ['p', 'q'], NULL, NULL, '')",
        "('', 'x', ['q', 'p'], NULL, NULL, '')",
        "('', 'x', ['q', 'p'], NULL, NULL, '')",
        "('', 'x', [], 0, NULL, '')",
        "('', 'x', [], -0.0, NULL, '')",
        "('', 'x', [], NULL, 0, '')",
        "('', 'x', [], NULL, NULL, 'x')",
    ]
    store.client.command(f"INSERT INTO {db}.probe VALUES {', '.join(rows)}")
    select = f"SELECT DISTINCT {hash_} AS h FROM {db}.probe"
    assert store.rows(f"SELECT count() FROM ({select})") == [(len(rows) - 1,)]


class _Server:
    """A store's ``rows`` as a server of ``version`` answers ``SELECT version()``."""

    def __init__(self, version: str) -> None:
        self.version = version

    def rows(self, query: str) -> list[tuple[str]]:
        assert query == "SELECT version()"
        return [(self.version,)]


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (["26.9.1.1"], ROW_HASH),
        (["25.5.1.2"], ROW_HASH),
        (["25.3.6.56"], TEXT_ROW_HASH),
        (["24.8.14.39"], TEXT_ROW_HASH),
        (["26.9.1.1", "25.3.6.56"], TEXT_ROW_HASH),
    ],
)
def test_the_row_hash_is_one_every_compared_server_computes(
    versions: list[str], expected: str
) -> None:
    """A server before 25.5 cannot hash a tuple holding a NULL: the stores compared then all
    hash the rows' text form, so equal rows still hash alike across them."""
    stores = [cast(ProjectionStore, _Server(v)) for v in versions]
    assert row_hash(*stores) == expected


def test_the_row_hash_of_a_chdb_store_is_by_value(open_store: StoreFactory) -> None:
    assert row_hash(open_store("version")) == ROW_HASH
