"""Fetching Prometheus from Debian's package: system lists first, private lists (no root) when those
lack it, cached afterwards, and a failure that says what to do. apt-get and dpkg-deb are fakes here."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from storage_token.dev import prometheus

# A fake apt-get: `download` works only with a private list that `update` wrote (as on a machine whose
# system lists were never fetched); every call is logged.
FAKE_APT = """#!/bin/sh
echo "$@" >> "$FAKE_LOG"
lists=""
for arg in "$@"; do case "$arg" in -o=Dir::State::Lists=*) lists="${arg#-o=Dir::State::Lists=}";; esac; done
case "$*" in
  *update*) [ -n "$FAKE_UPDATE_FAILS" ] && { echo "E: no network" >&2; exit 100; }; touch "$lists/Packages"; exit 0;;
  *download*)
    if [ -n "$lists" ] && [ -f "$lists/Packages" ]; then echo deb > prometheus_2.42.0+ds-5_amd64.deb; exit 0; fi
    echo "E: Unable to locate package prometheus" >&2; exit 100;;
esac
"""
FAKE_DPKG_DEB = """#!/bin/sh
echo "dpkg-deb $@" >> "$FAKE_LOG"
mkdir -p "$3/usr/bin"
for tool in prometheus promtool; do
  printf '#!/bin/sh\\necho %s\\n' "$tool" > "$3/usr/bin/$tool"; chmod +x "$3/usr/bin/$tool"
done
"""


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", FAKE_APT), ("dpkg-deb", FAKE_DPKG_DEB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("STO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("STO_PROMETHEUS", raising=False)
    monkeypatch.delenv("STO_PROMTOOL", raising=False)
    return log


def test_without_system_lists_it_fetches_private_ones_unpacks_and_caches(fakes: Path, tmp_path: Path) -> None:
    found = prometheus.ensure_prometheus()
    assert found.prometheus == tmp_path / "cache" / "prometheus" / "bin" / "prometheus"
    assert found.promtool.read_text().strip().endswith("echo promtool")
    assert (found.prometheus.parent / "VERSION").read_text().startswith("prometheus_2.42.0")
    calls = fakes.read_text().splitlines()
    assert calls[0].endswith("download prometheus") and "Dir::State::Lists" not in calls[0]  # system lists first
    assert "update" in calls[1] and f"Dir::State::Lists={tmp_path}/cache/prometheus/apt/lists" in calls[1]
    assert calls[2].endswith("download prometheus") and "Dir::State::Lists" in calls[2]
    assert calls[3].startswith("dpkg-deb -x")
    # Cached: a second call runs nothing.
    assert prometheus.ensure_prometheus() == found
    assert len(fakes.read_text().splitlines()) == 4


def test_a_fetch_that_cannot_work_fails_saying_what_to_do(
    fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UPDATE_FAILS", "1")
    with pytest.raises(prometheus.PrometheusUnavailable) as raised:
        prometheus.ensure_prometheus()
    message = str(raised.value)
    assert "Unable to locate package prometheus" in message and "no network" in message
    assert "apt-get install prometheus" in message and "STO_PROMETHEUS" in message
    assert not (tmp_path / "cache" / "prometheus" / "bin").exists()  # nothing half-made is left to be used


def test_explicit_binaries_win(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STO_PROMETHEUS", "/opt/p/prometheus")
    monkeypatch.setenv("STO_PROMTOOL", "/opt/p/promtool")
    found = prometheus.ensure_prometheus()
    assert found == prometheus.PrometheusBinaries(Path("/opt/p/prometheus"), Path("/opt/p/promtool"))
    assert not fakes.exists()
