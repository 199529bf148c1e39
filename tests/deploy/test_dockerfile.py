"""The operator image's Dockerfile: hadolint-clean, multi-stage, pinned, non-root, and in step with the chart."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import CHART, REPO

DOCKERFILE = REPO / "Dockerfile"
METRICS_PORT = 8080  # fixed in templates/deployment.yaml (STO_METRICS_PORT)
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "python3-dev", "git", "curl", "wget")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings it)")
    proc = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_is_built_in_stages() -> None:
    assert len(stages()) >= 2
    copies = [args for word, args in stages()[-1] if word == "COPY"]
    assert any(args.startswith("--from=") for args in copies), "the final stage copies the build stage's output"


def test_the_image_carries_the_license_it_declares() -> None:
    copies = [args for word, args in stages()[-1] if word == "COPY"]
    assert any(args.split()[0] == "LICENSE" for args in copies)
    assert "Apache License" in (DOCKERFILE.parent / "LICENSE").read_text()


def test_base_images_are_pinned_to_a_full_version() -> None:
    for stage in stages():
        image = stage[0][1].split()[0]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{image} is not pinned"
        assert re.match(r"\d+\.\d+\.\d+", tag) or "@sha256:" in image, f"{image}: pin a full version"


def test_the_final_stage_runs_as_the_non_root_user_the_chart_expects() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid lets runAsNonRoot verify it"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"]
    assert gid and int(gid) == values["securityContext"]["runAsGroup"]


def test_the_final_stage_has_no_build_tools_or_installs() -> None:
    final = stages()[-1]
    for word, args in final:
        if word == "RUN":
            assert "pip install" not in args and "apt-get install" not in args, args
            for tool in BUILD_TOOLS:
                assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", args), f"{tool} in: {args}"


def test_ports_and_entrypoint_match_the_chart() -> None:
    final = stages()[-1]
    exposed = {int(port) for word, args in final if word == "EXPOSE" for port in args.split()}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert exposed == {METRICS_PORT, values["healthPort"]}
    entrypoint = [args for word, args in final if word == "ENTRYPOINT"]
    assert entrypoint == ['["storage-token", "run"]']


def test_the_image_leaves_the_development_harness_out() -> None:
    build = " ".join(args for instruction, args in stages()[0] if instruction == "RUN")
    installed = build.index("pip install")
    assert build.index("rm -rf /opt/venv/lib/python3.11/site-packages/storage_token/dev") > installed
