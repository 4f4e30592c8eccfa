"""The key-store contract: one abstract suite that every :class:`KeyStore` adapter subclasses.

A test module defines ``class TestXxxKeyStore(KeyStoreContract)`` and implements
:meth:`KeyStoreContract.open_store` (a store on the same keys each time it is called).
"""

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from okr_ledger.http.keys import KeyRecord, KeyStore, Scope, authenticate, new_key
from schemas.errors import UnknownNameError

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Seconds until ``check()`` held (fails after ``timeout_s``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "not within the timeout"
        time.sleep(0.02)
    return time.monotonic() - start


class KeyStoreContract:
    """What every key store must do. Not collected itself (no ``Test`` prefix)."""

    def open_store(self, follow: bool = False) -> KeyStore:
        raise NotImplementedError

    @pytest.fixture
    def store(self) -> Iterator[KeyStore]:
        store = self.open_store()
        yield store
        store.close()

    def _key(self) -> tuple[str, KeyRecord]:
        return new_key(scopes=(Scope.WRITE,), orgs=("acme",), source="jira")

    def test_an_added_key_is_found_and_authenticates(self, store: KeyStore) -> None:
        token, record = self._key()
        store.add(record)
        assert store.find(record.key_id) == record
        assert authenticate(store, token) == record
        assert authenticate(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert authenticate(store, "okr_" + "0" * 12 + "_" + "A" * 43) is None

    def test_only_the_digest_is_stored(self, store: KeyStore) -> None:
        token, record = self._key()
        store.add(record)
        (found,) = [r for r in store.records() if r.key_id == record.key_id]
        assert token not in found.model_dump_json()
        assert token.split("_", 2)[2] not in found.model_dump_json()

    def test_keys_are_listed_oldest_first(self, store: KeyStore) -> None:
        records = [self._key()[1] for _ in range(3)]
        for record in records:
            store.add(record)
        listed = [r.key_id for r in store.records()]
        assert [r.key_id for r in records] == [
            k for k in listed if k in {r.key_id for r in records}
        ]

    def test_a_revoked_key_no_longer_authenticates_and_stays_listed(self, store: KeyStore) -> None:
        token, record = self._key()
        store.add(record)
        revoked = store.revoke(record.key_id, AT)
        assert revoked.revoked_at == AT
        assert authenticate(store, token) is None
        assert store.revoke(record.key_id, datetime.now(UTC)).revoked_at == AT  # no change
        assert any(r.key_id == record.key_id and r.revoked_at == AT for r in store.records())

    def test_revoking_an_unknown_key_names_the_closest(self, store: KeyStore) -> None:
        _, record = self._key()
        store.add(record)
        with pytest.raises(UnknownNameError) as raised:
            store.revoke(record.key_id[:-1] + "x", AT)
        assert raised.value.suggestions == [record.key_id]

    def test_another_store_on_the_same_keys_sees_adds_and_revocations(
        self, store: KeyStore
    ) -> None:
        other = self.open_store(follow=True)
        try:
            token, record = self._key()
            store.add(record)
            eventually(lambda: authenticate(other, token) is not None)
            store.revoke(record.key_id, AT)
            eventually(lambda: authenticate(other, token) is None)
        finally:
            other.close()

    def test_keys_outlive_their_store(self, store: KeyStore) -> None:
        token, record = self._key()
        store.add(record)
        again = self.open_store()
        try:
            assert authenticate(again, token) == record
        finally:
            again.close()
