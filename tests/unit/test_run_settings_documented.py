"""Every `storage-token run` setting is a flag with its environment variable and default in `--help`, and a row
of README's configuration table; the sweep, recheck and provider-timeout settings reach the operator's Settings."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path

import pytest

from storage_token.process import run_cli
from storage_token.process.cli import build_parser, main
from storage_token.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
RUN_CLI_SOURCE = Path(run_cli.__file__).read_text()


def run_options() -> list[argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices["run"]._actions if a.option_strings and "--help" not in a.option_strings]


def readme_configuration_table() -> str:
    section = README.split("### Operator configuration", 1)[1]
    table = section[section.index("\n|") :]
    return table.split("\n\n", 1)[0]


def test_run_help_names_each_flags_environment_variable_and_default() -> None:
    for action in run_options():
        text = action.help or ""
        assert re.search(r"\benv [A-Z_]+", text), f"{action.option_strings[0]}: no environment variable in --help"
        assert "default" in text, f"{action.option_strings[0]}: no default in --help"


def test_readme_table_lists_every_flag_and_environment_variable() -> None:
    table = readme_configuration_table()
    for action in run_options():
        assert f"`{action.option_strings[0]}" in table, f"README's configuration table lacks {action.option_strings[0]}"
    for name in sorted(set(re.findall(r'"(STO_[A-Z_]+|KUBECONFIG|POD_NAMESPACE)"', RUN_CLI_SOURCE))):
        assert f"`{name}`" in table, f"README's configuration table lacks {name}"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stops `run` right after its settings are built (no kopf, no cluster)."""
    seen: list[Settings] = []

    class Recorded(Settings):
        def __post_init__(self) -> None:
            super().__post_init__()
            seen.append(self)

    def stop(fmt: str, level: str) -> None:
        raise SystemExit(0)

    for name in ("STO_PROVIDER_TIMEOUT", "STO_SWEEP_INTERVAL", "STO_SWEEP_MIN_AGE", "STO_PROVIDER_RECHECK_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(run_cli, "Settings", Recorded)
    monkeypatch.setattr(run_cli, "configure_logging", stop)
    return seen


def test_the_provider_timeout_and_intervals_are_flags(started: list[Settings]) -> None:
    argv = ["run", "--provider-timeout=30s", "--sweep-interval=1m", "--sweep-min-age=2m"]
    with pytest.raises(SystemExit):
        main([*argv, "--provider-recheck-interval=90s"])
    (settings,) = started
    assert settings.provider_timeout == 30.0
    assert settings.sweep_interval == timedelta(minutes=1)
    assert settings.sweep_min_age == timedelta(minutes=2)
    assert settings.provider_recheck_interval == timedelta(seconds=90)


def test_the_provider_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch, started: list[Settings]) -> None:
    monkeypatch.setenv("STO_PROVIDER_TIMEOUT", "2.5")
    with pytest.raises(SystemExit):
        main(["run"])
    assert started[0].provider_timeout == 2.5


def test_a_bad_provider_timeout_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], started: list[Settings]
) -> None:
    monkeypatch.setenv("STO_PROVIDER_TIMEOUT", "0s")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storage-token run: STO_PROVIDER_TIMEOUT: must be more than 0s") and err.count("\n") == 1
    assert started == []
