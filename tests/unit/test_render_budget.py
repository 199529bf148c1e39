"""The sandbox's operation budget is per rendered Secret, not per template key (#14)."""

from __future__ import annotations

import pytest

from storage_token.api.token import SecretTemplate
from storage_token.secrets.render import MAX_OPERATIONS, TemplateError, render_secret_data
from storage_token.secrets.worker import placeholder_material

OUTER = 3000  # loop steps of the outer loop (under MAX_ITEMS, the longest list a template may build)
INNER = int(MAX_OPERATIONS * 0.9) // OUTER - 1


def just_under_the_budget() -> str:
    """About 90% of MAX_OPERATIONS in loop steps, and nothing else."""
    return f"{{% for a in [0]*{OUTER} %}}{{% for b in [0]*{INNER} %}}{{% endfor %}}{{% endfor %}}ok"


KEY = placeholder_material("b2", ("data",), ())


def test_one_key_just_under_the_budget_renders() -> None:
    assert render_secret_data(KEY, SecretTemplate(data={"k": just_under_the_budget()}))["k"] == "ok"


@pytest.mark.parametrize("keys", [2, 32, 64])
def test_many_keys_each_just_under_the_budget_are_refused_together(keys: int) -> None:
    template = SecretTemplate(data={f"k{i:02}": just_under_the_budget() for i in range(keys)})
    with pytest.raises(TemplateError) as refused:
        render_secret_data(KEY, template)
    assert refused.value.reason == TemplateError.LIMIT
    assert "whole Secret" in str(refused.value)
    assert refused.value.secret_key == "k01"  # the second key is the one that runs out


def test_the_budget_starts_afresh_for_every_render() -> None:
    template = SecretTemplate(data={"k": just_under_the_budget()})
    for _ in range(3):
        assert render_secret_data(KEY, template)["k"] == "ok"
