"""The query endpoint's credential: a token file only its owner reads, found by the CLI."""

import os
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from typer.testing import CliRunner

from okr_ledger.cli import app
from okr_ledger.served_store import worker_url
from okr_ledger.settings import Settings
from projections.query_credentials import (
    TOKEN_FILE,
    Credential,
    ensure_token,
    is_loopback,
    read_token,
)
from schemas.errors import ConfigurationError


def test_init_creates_a_token_only_its_owner_reads_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "300")
    first = CliRunner().invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    token = tmp_path / "data" / TOKEN_FILE
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert f"query token: {token}" in first.output
    secret = read_token(token)
    assert len(secret) >= 32
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    assert read_token(token) == secret


def test_a_token_others_may_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / TOKEN_FILE
    ensure_token(token)
    token.chmod(0o644)
    with pytest.raises(ConfigurationError, match=r"may be read or changed by others.*chmod 600"):
        read_token(token)
    link = tmp_path / "link"
    link.symlink_to(token)
    token.chmod(0o600)
    with pytest.raises(ConfigurationError, match="may be read or changed by others"):
        read_token(link)
    with pytest.raises(ConfigurationError, match="no query token at"):
        read_token(tmp_path / "missing")


def test_the_cli_finds_the_credential_without_the_user_typing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKR_DATA_DIR", str(tmp_path))
    secret = ensure_token(tmp_path / TOKEN_FILE)
    url = urlsplit(worker_url(Settings()))
    assert (url.username, url.password) == ("reader", secret)
    monkeypatch.setenv("OKR_QUERY_PASSWORD", "p@ss:/word")
    url = urlsplit(worker_url(Settings()))
    assert (url.username, unquote(url.password or "")) == ("reader", "p@ss:/word")


def test_credentials_compare_user_and_password() -> None:
    reader = Credential("reader", "token")
    assert reader.matches("reader", "token")
    assert not reader.matches("reader", "toke")
    assert not reader.matches("Reader", "token")
    assert not reader.matches("", "")
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.9.9.9")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org")] == [False] * 4


def test_the_worker_refuses_a_public_bind_without_a_configured_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OKR_DATA_DIR": str(tmp_path),
        "OKR_LEDGER_URL": "kafka://127.0.0.1:9",
        "OKR_WORKER_WEB_HOST": "0.0.0.0",
    }
    env.pop("OKR_QUERY_PASSWORD", None)
    done = subprocess.run(
        [sys.executable, "-c", "from okr_ledger.cli import main; main()", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: OKR_WORKER_WEB_HOST=0.0.0.0 is not a loopback address: set "
        "OKR_QUERY_PASSWORD to serve queries there"
    ]
