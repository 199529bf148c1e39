"""Fetch (once) and locate a real Prometheus and promtool, for the dashboard and alert tests.

They come from Debian's `prometheus` package, unpacked into the user cache without installing it
(no root, no service started): `apt-get download` then `dpkg-deb -x`. When apt has no package lists
yet, they are fetched into a private directory under the cache, so this needs no root either.
Elsewhere (no apt), binaries already on PATH are used. `STO_PROMETHEUS` / `STO_PROMTOOL` override both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from storage_token.dev.cluster.binaries import cache_root

PACKAGE = "prometheus"


@dataclass(frozen=True)
class PrometheusBinaries:
    prometheus: Path
    promtool: Path


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be found or fetched; the message says what to do."""


def _log(message: str) -> None:
    print(f"[prometheus] {message}", file=sys.stderr, flush=True)


def _cache_dir() -> Path:
    return cache_root() / "prometheus"


def _apt_options(private: Path | None) -> list[str]:
    """apt options for a private package list (an `apt-get update` that needs no root)."""
    if private is None:
        return []
    lists, cache = private / "lists", private / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    return [
        f"-o=Dir::State::Lists={lists}",
        f"-o=Dir::Cache={cache}",
        "-o=Debug::NoLocking=1",
        "-o=APT::Sandbox::User=" + ("root" if os.geteuid() == 0 else str(os.geteuid())),
    ]


def _apt(args: list[str], cwd: Path, private: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "-q", *_apt_options(private), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def _download_deb(work: Path) -> Path:
    """The package's .deb in `work`: with the system's lists if they have it, else with private ones."""
    attempts: list[str] = []
    for private in (None, _cache_dir() / "apt"):
        if private is not None:
            _log("apt has no list naming the package; fetching Debian's lists into the cache (first run only)")
            update = _apt(["update"], work, private)
            if update.returncode != 0:
                attempts.append(f"apt-get update (private lists): {update.stderr.strip()[-1500:]}")
                continue
        download = _apt(["download", PACKAGE], work, private)
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if download.returncode == 0 and debs:
            return debs[-1]
        attempts.append(f"apt-get download {PACKAGE}: {download.stderr.strip()[-1500:]}")
    raise PrometheusUnavailable(
        f"could not download Debian's {PACKAGE} package:\n" + "\n".join(attempts) + "\n"
        "Install it (`apt-get install prometheus`) or point STO_PROMETHEUS and STO_PROMTOOL at the binaries."
    )


def fetch_from_debian(out: Path) -> PrometheusBinaries:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PrometheusUnavailable("apt-get and dpkg-deb are needed to fetch Debian's prometheus package")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        deb = _download_deb(work)
        _log(f"unpacking {deb.name} into {out}")
        unpacked = work / "root"
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PrometheusUnavailable(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("prometheus", "promtool"):
            shutil.copy2(unpacked / "usr" / "bin" / name, staging / name)
        (staging / "VERSION").write_text(deb.name + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)  # complete or absent: an interrupted fetch is redone, never half-used
    return PrometheusBinaries(out / "prometheus", out / "promtool")


def ensure_prometheus() -> PrometheusBinaries:
    """prometheus and promtool: the overrides, the cached copy, a fresh fetch, or PATH (in that order)."""
    if os.environ.get("STO_PROMETHEUS") and os.environ.get("STO_PROMTOOL"):
        return PrometheusBinaries(Path(os.environ["STO_PROMETHEUS"]), Path(os.environ["STO_PROMTOOL"]))
    out = _cache_dir() / "bin"
    cached = PrometheusBinaries(out / "prometheus", out / "promtool")
    if cached.prometheus.exists() and cached.promtool.exists():
        return cached
    on_path = shutil.which("prometheus"), shutil.which("promtool")
    if shutil.which("apt-get") is None and on_path[0] and on_path[1]:
        return PrometheusBinaries(Path(on_path[0]), Path(on_path[1]))
    return fetch_from_debian(out)


if __name__ == "__main__":
    found = ensure_prometheus()
    version = subprocess.run([str(found.prometheus), "--version"], capture_output=True, text=True, check=True)
    print(found, version.stdout.splitlines()[0], sep="\n")
