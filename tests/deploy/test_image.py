"""The operator image: set at render time for the static manifest, pull secrets through the chart."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml
from deploy_support import REPO, Render

RENDER = REPO / "deploy" / "render.py"
STATIC = REPO / "deploy" / "static" / "storage-token-operator.yaml"


def run_render(*args: str, helm: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(RENDER), *(("--helm", helm) if helm else ()), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj and obj["kind"] == "Deployment"]
    return found


def image_of(text: str) -> str:
    (container,) = deployment(list(yaml.safe_load_all(text)))["spec"]["template"]["spec"]["containers"]
    image: str = container["image"]
    return image


def test_the_committed_manifest_keeps_the_default_image() -> None:
    assert image_of(STATIC.read_text()) == "storage-token-operator:0.1.0"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.example/team/storage-token-operator:1.2.3", "registry.example/team/storage-token-operator:1.2.3"),
        ("localhost:5000/sto:dev", "localhost:5000/sto:dev"),  # a registry port is not the tag
        ("registry.example/sto", "registry.example/sto:0.1.0"),  # no tag: the chart's appVersion
    ],
)
def test_render_image_prints_a_manifest_with_that_image_and_writes_nothing(
    helm: str, image: str, expected: str
) -> None:
    before = STATIC.read_text()
    proc = run_render("--image", image, helm=helm)
    assert proc.returncode == 0, proc.stderr
    assert image_of(proc.stdout) == expected
    assert f"render.py --image {image}" in "\n".join(proc.stdout.splitlines()[:5])
    # Everything but the image (and that header line) is the committed manifest.
    kept = [line for line in proc.stdout.splitlines() if "image" not in line.lower()]
    assert kept == [line for line in before.splitlines() if "image" not in line.lower()]
    assert STATIC.read_text() == before


def test_render_image_to_a_file(helm: str, tmp_path: Any) -> None:
    out = tmp_path / "sto.yaml"
    proc = run_render("--image", "registry.example/sto:9", "--static-out", str(out), helm=helm)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert image_of(out.read_text()) == "registry.example/sto:9"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--check", "--image", "registry.example/sto:1"), "--check compares against the default image"),
        (("--image", "registry.example/sto@sha256:abc"), "digests are not supported"),
        (("--image", "registry.example/sto:"), "give REPO or REPO:TAG"),
        (("--image", ""), "give REPO or REPO:TAG"),
    ],
)
def test_render_refuses_a_bad_image_request(args: tuple[str, ...], words: str) -> None:
    proc = run_render(*args, helm="/nonexistent/helm")  # refused before helm is needed
    assert proc.returncode != 0
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_image_pull_secrets_reach_the_pod(render: Render) -> None:
    assert "imagePullSecrets" not in deployment(render())["spec"]["template"]["spec"]
    pod = deployment(render("imagePullSecrets[0].name=my-registry", "imagePullSecrets[1].name=mirror"))
    assert pod["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "my-registry"}, {"name": "mirror"}]


def test_image_pull_secrets_need_a_name(helm: str) -> None:
    from deploy_support import CHART, run_helm

    proc = run_helm(helm, "template", "sto", str(CHART), "--set", "imagePullSecrets[0].nam=typo")
    assert proc.returncode != 0
    assert "imagePullSecrets" in proc.stderr
