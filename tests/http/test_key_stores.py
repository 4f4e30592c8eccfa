"""The key store on SQLite (embedded runtime): the contract, and what is on disk."""

import os
import stat
from pathlib import Path

import pytest

from okr_ledger.http.key_stores import KEYS_FILE, SqliteKeyStore
from okr_ledger.http.keys import KeyStore, Scope, key_id_of, new_key, write_refusal
from tests.http.key_store_contract import KeyStoreContract


class TestSqliteKeyStore(KeyStoreContract):
    @pytest.fixture(autouse=True)
    def _place(self, tmp_path: Path) -> None:
        self.path = tmp_path / KEYS_FILE

    def open_store(self, follow: bool = False) -> KeyStore:
        return SqliteKeyStore(self.path)

    def test_the_file_is_its_owners_only(self, store: KeyStore) -> None:
        assert stat.S_IMODE(os.stat(self.path).st_mode) == 0o600


def test_a_key_is_256_random_bits_behind_a_public_id() -> None:
    token, record = new_key(scopes=(Scope.WRITE,), orgs=("acme",), source="jira")
    assert key_id_of(token) == record.key_id
    secret = token.split("_", 2)[2]
    assert len(secret) == 43  # base64url of 32 bytes
    assert key_id_of(token + "x") is None
    assert key_id_of(" " + token) is None
    other, _ = new_key(scopes=(Scope.WRITE,), orgs=("acme",), source="jira")
    assert other != token


def test_write_refusals_name_what_the_key_may_not_do() -> None:
    _, record = new_key(
        scopes=(Scope.WRITE,), orgs=("acme",), source="jira", types=("CheckInRecorded",)
    )
    assert write_refusal(record, "acme", "jira", "CheckInRecorded") == ""
    assert "org 'globex'" in write_refusal(record, "globex", "jira", "CheckInRecorded")
    assert "not 'crm'" in write_refusal(record, "acme", "crm", "CheckInRecorded")
    assert "'ThemeAdded'" in write_refusal(record, "acme", "jira", "ThemeAdded")
    assert write_refusal(record, None, 7, ["x"]) == ""  # left to the rules, which reject it
    _, reader = new_key(scopes=(Scope.READ,), orgs=("acme",))
    assert "no write scope" in write_refusal(reader, "acme", "jira", "CheckInRecorded")
