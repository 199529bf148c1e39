"""`storage-token run` reads its flags and environment at run time: a bad value is one line, exit 2, for `run` only."""

from __future__ import annotations

import pytest

from storage_token.process import run_cli
from storage_token.process.cli import main
from storage_token.runtime.settings import Settings

ENV_NAMES = (
    "STO_WORKERS",
    "STO_METRICS_PORT",
    "STO_HEALTH_PORT",
    "STO_LOG_LEVEL",
    "STO_LOG_FORMAT",
    "STO_SWEEP_INTERVAL",
    "STO_SWEEP_MIN_AGE",
    "STO_PROVIDER_RECHECK_INTERVAL",
    "STO_CLUSTER_ID",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stops `run` right after its settings are built (no kopf, no cluster): what it would start with."""
    seen: list[Settings] = []

    class Recorded(Settings):
        def __post_init__(self) -> None:
            super().__post_init__()
            seen.append(self)

    def stop(fmt: str, level: str) -> None:
        raise SystemExit(0)

    monkeypatch.setattr(run_cli, "Settings", Recorded)
    monkeypatch.setattr(run_cli, "configure_logging", stop)
    return seen


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        pytest.param("STO_WORKERS", "abc", "STO_WORKERS: not a whole number: 'abc'", id="workers not a number"),
        pytest.param("STO_WORKERS", "0", "STO_WORKERS: must be at least 1, not 0", id="no workers"),
        pytest.param("STO_METRICS_PORT", "x", "STO_METRICS_PORT: not a port number: 'x'", id="metrics port"),
        pytest.param(
            "STO_HEALTH_PORT", "70000", "STO_HEALTH_PORT: port must be 0-65535, not 70000", id="health port range"
        ),
        pytest.param("STO_LOG_LEVEL", "verbose", "STO_LOG_LEVEL: unknown log level 'verbose'", id="log level"),
        pytest.param("STO_LOG_FORMAT", "xml", "STO_LOG_FORMAT: unknown log format 'xml'", id="log format"),
        pytest.param("STO_SWEEP_INTERVAL", "often", "STO_SWEEP_INTERVAL: not a duration: 'often'", id="duration"),
    ],
)
def test_a_bad_environment_value_fails_run_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started: list[Settings],
    name: str,
    value: str,
    words: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
    assert started == []  # refused before anything starts
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("storage-token run: ") and err.count("\n") == 1
    assert words in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["provider", "--help"], ["run", "--help"], ["emulator", "--help"]])
def test_a_bad_environment_value_breaks_no_other_command_nor_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    monkeypatch.setenv("STO_WORKERS", "abc")
    monkeypatch.setenv("STO_METRICS_PORT", "x")
    monkeypatch.setenv("STO_LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert "usage: storage-token" in capsys.readouterr().out


def test_run_help_names_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for name in ("STO_WORKERS", "STO_METRICS_PORT", "STO_HEALTH_PORT", "STO_LOG_LEVEL", "STO_LOG_FORMAT"):
        assert name in out


@pytest.mark.parametrize("flags", [["--log-level", "verbose"], ["--workers", "many"], ["--metrics-port", "-1"]])
def test_a_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flags[0]}" in err and "Traceback" not in err


def test_log_levels_are_read_in_any_case(monkeypatch: pytest.MonkeyPatch, started: list[Settings]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--log-level", "debug", "--log-format", "json"])
    monkeypatch.setenv("STO_LOG_LEVEL", "warning")
    with pytest.raises(SystemExit):
        main(["run"])
    assert [(s.log_format, s.log_level) for s in started] == [("json", "DEBUG"), ("plain", "WARNING")]


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, started: list[Settings]) -> None:
    monkeypatch.setenv("STO_WORKERS", "abc")  # a flag given on the command line replaces it unread
    monkeypatch.setenv("STO_LOG_LEVEL", "ERROR")
    with pytest.raises(SystemExit):
        main(["run", "--workers", "4", "--log-level", "info"])
    assert [(s.workers, s.log_level) for s in started] == [(4, "INFO")]


def test_the_environment_and_the_defaults(monkeypatch: pytest.MonkeyPatch, started: list[Settings]) -> None:
    with pytest.raises(SystemExit):
        main(["run"])
    monkeypatch.setenv("STO_WORKERS", "3")
    monkeypatch.setenv("STO_METRICS_PORT", "0")
    monkeypatch.setenv("STO_SWEEP_INTERVAL", "30s")
    with pytest.raises(SystemExit):
        main(["run"])
    defaults, from_env = started
    assert (defaults.workers, defaults.metrics_port, defaults.health_port) == (32, 8080, 8081)
    assert (from_env.workers, from_env.metrics_port, from_env.sweep_interval.total_seconds()) == (3, 0, 30)


def test_watched_namespaces_are_exact_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], started: list[Settings]
) -> None:
    """Each one becomes a watch path: a pattern or a stray character would watch nothing, silently."""
    monkeypatch.setenv("STO_WATCH_NAMESPACES", "team-a, team-b,")
    with pytest.raises(SystemExit):
        main(["run"])
    assert started[-1].namespaces == ("team-a", "team-b")

    for bad in ("team-*", "Team-A", "team/a"):
        assert main(["run", "--namespace", bad]) == 2
        err = capsys.readouterr().err
        assert f"{bad!r} is not a namespace name" in err and err.count("\n") == 1
