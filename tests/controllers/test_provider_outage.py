"""A provider outage during a credentials recheck: verified credentials stay Ready, and the check retries soon."""

from __future__ import annotations

from typing import Any

from harness import Harness

from storage_token.api.conditions import condition
from storage_token.controllers.providers import RETRY_SOON

NS = "team-a"


def ready(body: dict[str, Any] | None) -> dict[str, Any]:
    assert body is not None
    found = condition((body.get("status") or {}).get("conditions"), "Ready")
    assert found is not None
    return found


def outage(h: Harness) -> None:
    h.emulators.emulator("b2").faults.inject("status", "b2_authorize_account", status=503, times=None)


async def test_verified_credentials_stay_ready_through_an_outage(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    assert ready(h.provider(provider))["status"] == "True"
    outage(h)

    for _ in range(2):  # a second failed check says so once, not twice
        body = h.provider(provider)
        assert body is not None
        next_check, changed = await h.operator.providers.reconcile(body)
        state = ready(h.provider(provider))
        assert (state["status"], state["reason"], changed) == ("True", "CredentialsVerified", False)
        assert state["message"].count("the last check failed (ProviderUnavailable)") == 1
        assert next_check is not None and next_check - h.now <= RETRY_SOON

    h.emulators.emulator("b2").faults.clear()
    await h.create_token(NS, "app", provider)
    await h.reconcile_token(NS, "app")
    assert h.condition(NS, "app")["status"] == "True"  # issuing was never blocked on the provider


async def test_an_outage_before_any_verification_is_not_ready(harness: Harness) -> None:
    h = harness
    outage(h)
    provider = await h.create_provider("b2", ready=False)

    assert (ready(h.provider(provider))["status"], ready(h.provider(provider))["reason"]) == (
        "False",
        "ProviderUnavailable",
    )


async def test_an_outage_after_a_spec_change_is_not_ready(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    h.kube.update(provider.kind, NS, provider.name, {"spec": {"policy": {"allowedBuckets": ["demo-*"]}}})
    outage(h)
    body = h.provider(provider)
    assert body is not None

    await h.operator.providers.reconcile(body)

    assert ready(h.provider(provider))["status"] == "False"  # what was verified is not this spec
