"""README.md, walked as a new user would: start the sandbox, run the hints it prints, then apply every ```yaml
block (server-side; each StorageProvider and StorageToken must become Ready with the real operator) and run every
```sh/```bash/```console block, verbatim and in order, in a shell that sourced the sandbox's env file.

A block that can't run here (Docker, a registry, nodes) carries `<!-- readme-test: skip: why -->` on the line
before its fence; `<!-- readme-test: last: why -->` defers a block to the end (the uninstall). Every other block
that fails fails the test, with its line number and output.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (skip|last): (\S.*?) -->$")
FENCE = re.compile(r"^```(\w*)$")
RUNNABLE = ("yaml", "sh", "bash", "console")
READY_KINDS = {"StorageProvider": "storageprovider", "ClusterStorageProvider": "clusterstorageprovider"}
# Blocks that can't run against the sandbox stay few; each says why in the README source.
MAX_SKIPPED = 8


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None = None  # "skip" | "last"
    reason: str = ""


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i] == "```")
        block = Block(index + 1, opening.group(1), "\n".join(lines[index + 1 : end]) + "\n")
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marked = MARKER.match(previous.strip())
        if marked:
            block.marker, block.reason = marked.group(1), marked.group(2)
        blocks.append(block)
        index = end + 1
    return blocks


def manifests(block: Block) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(block.text) if d is not None]


def commands(block: Block) -> str:
    """The shell text of a block: a console block's `$ ` lines, any other block as it is."""
    if block.lang != "console":
        return block.text
    return "\n".join(line[2:] for line in block.text.splitlines() if line.startswith("$ ")) + "\n"


# -- the static part: runs without a cluster -------------------------------------------------------


def test_the_readme_has_the_examples_users_need() -> None:
    kinds = [d.get("kind") for b in readme_blocks() if b.lang == "yaml" for d in manifests(b) if isinstance(d, dict)]
    for kind in ("StorageProvider", "ClusterStorageProvider", "StorageToken", "Deployment", "Role"):
        assert kind in kinds
    assert kinds.count("StorageToken") >= 3  # one per provider kind and API


def test_blocks_not_run_are_few_and_say_why() -> None:
    blocks = readme_blocks()
    skipped = [b for b in blocks if b.marker == "skip"]
    for block in skipped:
        print(f"not run: README.md:{block.line} ({block.lang}): {block.reason}")
    assert len(skipped) <= MAX_SKIPPED, [b.line for b in skipped]
    assert all(b.lang in RUNNABLE for b in blocks if b.marker), "a marker on a block that is never run"
    for block in blocks:
        if block.lang == "yaml" and block.marker is None:
            for document in manifests(block):
                assert isinstance(document, dict) and "apiVersion" in document and "kind" in document, block.line


# -- the walk against a sandbox of its own ---------------------------------------------------------


@dataclass
class Sandbox:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops everything."):
                self.ready.set()
        self.ready.set()  # exited: nothing more will come

    def text(self) -> str:
        return "\n".join(self.output)

    def hints(self, heading: str) -> list[str]:
        """The indented command lines printed under the line starting with `heading`."""
        start = next(i for i, line in enumerate(self.output) if line.startswith(heading))
        found = []
        for line in self.output[start + 1 :]:
            if not line.startswith("  "):
                break
            found.append(line.strip())
        return found

    @property
    def source_line(self) -> str:
        return next(h for h in self.hints("In another shell") if h.startswith("source "))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    if os.environ.get("STO_KUBECONFIG"):
        pytest.skip("the walk ends by uninstalling everything: it runs only in a sandbox of its own")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "STO_KUBECONFIG")}
    process = subprocess.Popen(
        [sys.executable, "-m", "storage_token.process.cli", "sandbox", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    started = Sandbox(process)
    reader = threading.Thread(target=started.read, daemon=True)
    reader.start()
    try:
        started.ready.wait(300)
        assert process.poll() is None and "sandbox ready" in started.text(), started.text()[-4000:]
        yield started
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=10)
    assert "sandbox stopped." in started.text(), started.text()[-2000:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the commands run: the repository's paths README names, and nothing written into the repository."""
    path = tmp_path_factory.mktemp("readme-walk")
    for name in ("deploy", "crds", ".venv", "Dockerfile"):
        (path / name).symlink_to(REPO / name)
    return path


def shell(script: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "STO_KUBECONFIG")}
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def apply_and_wait(block: Block, source: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side` of the block, then every provider and token in it Ready, and each token's
    Secret there."""
    manifest = cwd / f"readme-{block.line}.yaml"
    manifest.write_text(block.text)
    steps = [source, f"kubectl apply --server-side -f {shlex.quote(str(manifest))}"]
    for document in manifests(block):
        assert isinstance(document, dict)
        kind, metadata = document.get("kind"), document.get("metadata") or {}
        assert isinstance(metadata, dict)
        namespace = f" -n {metadata['namespace']}" if metadata.get("namespace") else ""
        if kind in READY_KINDS or kind == "StorageToken":
            resource = READY_KINDS.get(str(kind), "storagetoken")
            steps.append(f"kubectl wait --for=condition=Ready {resource}/{metadata['name']}{namespace} --timeout=90s")
        if kind == "StorageToken":
            spec = document.get("spec") or {}
            assert isinstance(spec, dict)
            secret = (spec.get("secret") or {}).get("name") or metadata["name"]
            steps.append(f"kubectl get secret {secret}{namespace} -o name")
    return shell("\n".join(steps) + "\n", cwd)


def run_block(block: Block, source: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if block.lang == "yaml":
        return apply_and_wait(block, source, cwd)
    return shell(source + "\n" + commands(block), cwd)


def test_the_sandbox_hints_run_verbatim(sandbox: Sandbox, workdir: Path) -> None:
    for heading in ("In another shell", "Or only the cluster"):
        hints = sandbox.hints(heading)
        assert hints, f"no hints under {heading!r}"
        done = shell("\n".join(hints) + "\n", workdir)
        assert done.returncode == 0, f"{heading}: {hints}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        assert "us3-reader" in done.stdout
    printed = sandbox.text()
    for needed in ("helm ", "kubectl ", "http://127.0.0.1:18410", "http://127.0.0.1:18411", "team-a-uploads"):
        assert needed in printed


def test_every_readme_block_runs_verbatim_against_the_sandbox(sandbox: Sandbox, workdir: Path) -> None:
    blocks = [b for b in readme_blocks() if b.lang in RUNNABLE and b.marker != "skip"]
    ordered = [b for b in blocks if b.marker != "last"] + [b for b in blocks if b.marker == "last"]
    failures = []
    started = time.monotonic()
    for block in ordered:
        done = run_block(block, sandbox.source_line, workdir)
        if done.returncode != 0:
            failures.append(
                f"README.md:{block.line} ({block.lang}) exited {done.returncode}\n{block.text}"
                f"--- stdout\n{done.stdout[-1500:]}\n--- stderr\n{done.stderr[-1500:]}"
            )
    print(f"ran {len(ordered)} README blocks in {time.monotonic() - started:.0f}s")
    assert not failures, "\n\n".join(failures)
