"""README's reference tables say what the code does: every condition and event reason the operator can set is
in Troubleshooting, every key each preset writes is in the preset table, every label and annotation the operator
sets or reads is named, and the metrics table lists every metric."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

import storage_token
from storage_token.api.token import API_GROUP, SecretTemplate
from storage_token.policy import reasons
from storage_token.runtime import metrics
from storage_token.secrets.render import PRESETS, KeyMaterial, render_secret_data

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SOURCE = Path(storage_token.__file__).parent
OPERATOR_MODULES = [p for p in SOURCE.rglob("*.py") if "dev" not in p.relative_to(SOURCE).parts]


def section(title: str) -> str:
    start = README.index(f"### {title}\n")
    end = README.find("\n## ", start)
    following = README.find("\n### ", start + 1)
    return README[start : min(i for i in (end, following) if i != -1)]


def module_constants() -> dict[str, str]:
    """NAME -> value of every module-level string constant of the operator (names are unique enough here)."""
    found: dict[str, str] = {"API_GROUP": API_GROUP}

    def value(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.JoinedStr):  # f"{API_GROUP}/expires-at"
            parts = [value(p.value) if isinstance(p, ast.FormattedValue) else value(p) for p in node.values]
            return None if None in parts else "".join(p for p in parts if p is not None)
        if isinstance(node, ast.Name):
            return found.get(node.id)
        return None

    for path in OPERATOR_MODULES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                text = value(node.value)
                for target in node.targets:
                    if text is not None and isinstance(target, ast.Name):
                        found.setdefault(target.id, text)
    return found


def reasons_in_code() -> set[str]:
    """Every reason in policy/reasons.py, and every reason passed as such to `set_condition` or `events.record`
    (a literal or a named constant) anywhere in the operator."""
    found = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}
    constants = module_constants()
    for path in OPERATOR_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            position = {"set_condition": 3, "record": 2}.get(name)
            if position is None or len(node.args) <= position:
                continue
            arguments = [node.args[position]]
            while arguments:
                argument = arguments.pop()
                if isinstance(argument, ast.IfExp):  # "Renewed" if renewed else reasons.ISSUED
                    arguments += [argument.body, argument.orelse]
                elif isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.add(argument.value)
                elif isinstance(argument, ast.Name) and argument.id in constants:
                    found.add(constants[argument.id])
                elif isinstance(argument, ast.Attribute) and argument.attr in constants:
                    found.add(constants[argument.attr])
    return {r for r in found if re.fullmatch(r"[A-Z][A-Za-z]+", r)}


def test_the_scan_finds_reasons_outside_the_reasons_module() -> None:
    found = reasons_in_code()
    assert {"Issued", "ProviderNotFound", "RevokingKeys"} <= found
    assert "KeysAbandoned" in found  # an event reason given as a literal in controllers/steps/deletion.py


def test_every_reason_the_code_sets_is_documented_in_troubleshooting() -> None:
    table = section("Troubleshooting")
    missing = sorted(r for r in reasons_in_code() if f"| `{r}` |" not in table)
    assert not missing, f"README's Troubleshooting table lacks {missing}"


def key_material(provider: str) -> KeyMaterial:
    native = (
        {"B2_APPLICATION_KEY_ID": "id", "B2_APPLICATION_KEY": "secret"}
        if provider == "b2"
        else {"US3_PUBLIC_KEY": "id", "US3_PRIVATE_KEY": "secret", "US3_REGION": "cn-bj2", "US3_S3_ENDPOINT": "x"}
    )
    return KeyMaterial(
        provider=provider,
        key_id="id",
        key_name="sto-x",
        access_key_id="id",
        secret_access_key="secret",
        endpoint="https://s3.example",
        region="cn-bj2",
        buckets=("b",),
        prefixes=("p/",),
        expires_at=datetime(2026, 12, 2, tzinfo=UTC),
        native=native,
    )


def preset_row(preset: str) -> set[str]:
    table = section("Consuming the Secret")
    row = next(line for line in table.splitlines() if line.startswith(f"| `{preset}` |"))
    documented = row.split("|")[2]
    return set(re.findall(r"`([A-Za-z0-9_.]+)`", documented))


@pytest.mark.parametrize("preset", PRESETS)
def test_the_preset_table_lists_every_key_each_preset_writes(preset: str) -> None:
    written: set[str] = set()
    for provider in ("b2", "us3"):
        written |= set(render_secret_data(key_material(provider), SecretTemplate(preset=preset)))
    documented = preset_row(preset)
    assert written <= documented, f"{preset}: README lacks {sorted(written - documented)}"


def test_the_rclone_remote_is_the_one_readme_names() -> None:
    conf = render_secret_data(key_material("b2"), SecretTemplate(preset="rclone"))["rclone.conf"]
    assert conf.startswith("[storage]\n")
    assert "remote named `storage`" in section("Consuming the Secret")


def test_every_label_and_annotation_of_the_operator_is_named() -> None:
    values = module_constants().values()
    names = {v for v in values if re.fullmatch(r"storagetoken\.dev/[A-Za-z-]+", v)}
    names |= {"app.kubernetes.io/managed-by"}
    assert {"storagetoken.dev/expires-at", "storagetoken.dev/key-id-hash", "storagetoken.dev/restart-by"} <= names
    missing = sorted(n for n in names if f"`{n}" not in README)
    assert not missing, f"README never names {missing}"


def test_the_metrics_table_lists_every_metric() -> None:
    table = section("Troubleshooting")
    source = Path(metrics.__file__).read_text()
    names = {f"storage_token_{n}" for n in re.findall(r'f"\{NAMESPACE\}_([a-z_]+)"', source)}
    assert len(names) >= 10
    missing = sorted(n for n in names if f"| `{n}` |" not in table)
    assert not missing, f"README's metrics table lacks {missing}"
