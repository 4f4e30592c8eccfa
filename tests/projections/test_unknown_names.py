"""A name that does not exist is an error with its own exit code (5) and the closest known
name, never an empty answer: every command's org, subject, unit and period, through ``main``."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from okr_ledger.cli import EXIT_UNKNOWN_NAME
from schemas.errors import UnknownNameError
from tests.builders import raw
from tests.projections.cli_support import main_exit

Okr = Callable[..., tuple[int, str, str]]
"""``okr(*args)`` runs ``main`` in this process: (exit code, stdout, stderr)."""


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo org (northwind), and a rejected submission of an org the ledger lacks."""
    where = tmp_path_factory.mktemp("names")
    with pytest.MonkeyPatch.context() as patch:
        _environment(patch, where)
        assert main_exit("demo") == 0
        rejected = where / "ghost.ndjson"
        rejected.write_bytes(raw("NoSuchType", {}, org_id="ghost") + b"\n")
        assert main_exit("submit", str(rejected)) == 3
    return where


@pytest.fixture
def okr(demo_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Okr:
    _environment(monkeypatch, demo_dir)
    capsys.readouterr()

    def run(*args: str) -> tuple[int, str, str]:
        code = main_exit(*args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _environment(patch: pytest.MonkeyPatch, where: Path) -> None:
    patch.chdir(where)
    patch.setenv("OKR_DATA_DIR", str(where / "data"))
    patch.setenv("COLUMNS", "200")
    for name in ("OKR_LEDGER_URL", "OKR_CLICKHOUSE_URL"):
        patch.delenv(name, raising=False)


UNKNOWN: list[tuple[tuple[str, ...], str, str | None]] = [
    (("verify", "--org", "nobody"), "org 'nobody'", None),
    (("verify", "--org", "northwnd"), "org 'northwnd'", "northwind"),
    (("export", "--org", "northwnd"), "org 'northwnd'", "northwind"),
    (("rejections", "--org", "northwin"), "org 'northwin'", "northwind"),
    (("rejections", "--org", "ghots"), "org 'ghots'", "ghost"),
    (("progress", "--org", "nope"), "org 'nope'", None),
    (("progress", "--org", "Northwind"), "org 'Northwind'", "northwind"),
    (("progress", "--unit", "nope"), "unit 'nope'", None),
    (("progress", "--unit", "salse"), "unit 'salse'", "sales"),
    (("progress", "--period", "2026-Q5"), "period '2026-Q5'", "2026-Q4' or '2026-Q3"),
    (("results", "--period", "2026-Q5"), "period '2026-Q5'", "2026-Q4' or '2026-Q3"),
    (("progress", "--org", "northwind", "--period", "q4"), "period 'q4'", None),
    (("cascade", "--org", "northwnd"), "org 'northwnd'", "northwind"),
    (("coverage", "--org", "northwnd"), "org 'northwnd'", "northwind"),
    (
        ("history", "onboardng-days"),
        "subject 'onboardng-days'",
        "onboarding-days' or 'team-onboarding",
    ),
    (("history", "nps", "--org", "northwnd"), "org 'northwnd'", "northwind"),
    (("history", "zz-qq-xx"), "subject 'zz-qq-xx'", None),
]
CASES = [
    pytest.param((*args, *json), name, suggestion, id=" ".join((*args, *json)))
    for args, name, suggestion in UNKNOWN
    for json in ((), ("--json",))
    if not (json and args[0] == "export")
]


@pytest.mark.parametrize(("args", "name", "suggestion"), CASES)
def test_an_unknown_name_exits_5_with_one_line_and_the_closest_name(
    okr: Okr, args: tuple[str, ...], name: str, suggestion: str | None
) -> None:
    code, out, err = okr(*args)
    assert (code, out) == (EXIT_UNKNOWN_NAME, "")
    assert err.splitlines() == [
        f"error: unknown {name}" + (f"; did you mean '{suggestion}'?" if suggestion else "")
    ]


def test_known_names_still_answer(okr: Okr) -> None:
    code, out, _err = okr("progress", "--org", "northwind", "--unit", "sales", "--period",
                          "2026-Q4", "--json")  # fmt: skip
    assert code == 0
    assert '"id":"midmarket-deals"' in out
    for args in (
        ("history", "onboarding-days"),
        ("history", "nps", "--org", "northwind"),
        ("cascade", "--org", "northwind"),
        ("coverage", "--org", "northwind"),
        ("verify", "--org", "northwind"),
        ("rejections", "--org", "northwind"),
    ):
        code, out, err = okr(*args)
        assert (code, err) == (0, ""), args
        assert out, args
    code, out, _err = okr("export", "--org", "northwind")
    assert code == 0
    assert len(out.splitlines()) > 50


def test_a_name_known_later_or_only_to_the_rejections_is_not_unknown(okr: Okr) -> None:
    code, out, _err = okr(
        "history", "onboarding-days", "--org", "northwind", "--as-of", "2020-01-01"
    )
    assert (code, out.strip()) == (0, "no events about 'onboarding-days' in northwind")
    assert okr("progress", "--org", "northwind", "--as-of", "2020-01-01", "--json")[:2] == (0, "")
    code, out, _err = okr("rejections", "--org", "ghost", "--json")
    assert code == 0
    assert '"reason_code":"unknown_type"' in out


def test_export_of_an_unknown_org_creates_no_file(okr: Okr, tmp_path: Path) -> None:
    output = tmp_path / "export.ndjson"
    assert okr("export", "--org", "nobody", "--output", str(output))[0] == EXIT_UNKNOWN_NAME
    assert not output.exists()


def test_an_unknown_reason_code_is_a_usage_error(okr: Okr) -> None:
    code, out, err = okr("rejections", "--reason", "unknown_typ")
    assert (code, out) == (2, "")
    assert "unknown_type" in err


def test_the_installed_command_exits_5(demo_dir: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OKR_")}
    done = subprocess.run(
        [sys.executable, "-c", "from okr_ledger.cli import main; main()", "history", "nsp"],
        env={**environment, "OKR_DATA_DIR": str(demo_dir / "data")},
        cwd=demo_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (5, "")
    assert done.stderr == "error: unknown subject 'nsp'; did you mean 'nps'?\n"


def test_the_error_names_the_closest_names_best_first() -> None:
    known = ["nps", "team-onboarding", "onboarding-days", "onboarding-days"]
    error = UnknownNameError("subject", "onboardng-days", known)
    assert (error.kind, error.name) == ("subject", "onboardng-days")
    assert error.suggestions == ["onboarding-days", "team-onboarding"]
    assert str(error) == (
        "unknown subject 'onboardng-days'; did you mean 'onboarding-days' or 'team-onboarding'?"
    )
    assert UnknownNameError("org", "x\n", []).suggestions == []
    assert str(UnknownNameError("org", "x\n", [])) == "unknown org 'x\\n'"
