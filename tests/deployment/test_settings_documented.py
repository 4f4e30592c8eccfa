"""What operators read: every setting is in the README's table, under its environment name."""

from pathlib import Path

from okr_ledger.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_under_its_environment_name() -> None:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    assert prefix == "OKR_"
    names = [f"{prefix}{field.upper()}" for field in Settings.model_fields]
    assert len(names) > 40
    assert [name for name in names if f"`{name}`" not in README] == []
