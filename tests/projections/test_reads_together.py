"""Statements read together (:meth:`ProjectionStore.dicts_together`): on more connections at
once, the same rows as one after the other; the extra connections closed with the store."""

import pytest

from projections.client import CHDB_SESSION
from projections.store import READERS, ProjectionStore
from schemas.errors import ProjectionQueryError

STATEMENTS = [
    ("SELECT number AS n, toString(number) AS s FROM numbers(5)", None),
    ("SELECT {x:UInt64} + number AS n FROM numbers({y:UInt64})", {"x": 7, "y": 3}),
    ("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name", None),
    ("SELECT 'a' AS a, [1, 2] AS b", None),
]


def test_together_gives_what_one_after_the_other_gives(store: ProjectionStore) -> None:
    expected = [store.dicts(query, params) for query, params in STATEMENTS]
    assert expected[2]  # in the store's database, on every connection
    for _ in range(3):  # the readers opened once, then reused
        assert store.dicts_together(STATEMENTS) == expected
    assert 1 <= len(store.readers) <= READERS


def test_a_store_without_a_target_reads_on_its_one_connection(store: ProjectionStore) -> None:
    alone = ProjectionStore(store.client, store.database)
    assert alone.dicts_together(STATEMENTS[:2]) == [
        store.dicts(query, params) for query, params in STATEMENTS[:2]
    ]
    assert alone.readers == []


def test_an_error_on_a_reader_is_raised_after_every_statement_ended(
    store: ProjectionStore,
) -> None:
    with pytest.raises(ProjectionQueryError):
        store.dicts_together([STATEMENTS[0], ("SELECT * FROM no_such_table_here", None)])
    assert store.dicts_together(STATEMENTS[:2])[0] == store.dicts(*STATEMENTS[0])


def test_close_closes_the_readers(store: ProjectionStore) -> None:
    store.dicts_together(STATEMENTS[:3])
    readers = list(store.readers)
    assert readers
    store.close()
    assert store.readers == []
    for reader in readers:
        with pytest.raises(Exception, match="closed"):
            reader.query("SELECT 1")


def test_every_connection_has_the_session_settings(store: ProjectionStore) -> None:
    store.dicts_together([("SELECT 1", None), ("SELECT 2", None)])  # opens the readers
    names = "SELECT name, value FROM system.settings WHERE name IN {n:Array(String)}"
    for client in (store.client, *store.readers):
        rows = client.query(names, {"n": list(CHDB_SESSION)}).result_rows
        found = {str(name): str(value) for name, value in rows}
        assert found == {name: str(value) for name, value in CHDB_SESSION.items()}
