"""The lifecycle defects the outside review reproduced (issue "Rebuild the key lifecycle"), one test each.

Each test builds the state the reviewer built and checks the design invariant the defect broke:
no install touches another's keys; deletion ends with the provider confirming; a broken spec or a
lost admission ends in revocation, never in a frozen state; no intent leaves a live key behind.
"""

from __future__ import annotations

import base64
from datetime import timedelta

from fake_kube import FakeKube
from harness import AFTER_CREATE, Harness, ProviderInfo

from storage_token.controllers.provider_release import CREDENTIALS_FINALIZER, PROVIDER_FINALIZER
from storage_token.controllers.tokens import ABANDON_ANNOTATION, FINALIZER
from storage_token.providers.b2 import B2Provider
from storage_token.providers.base import KeySpec
from storage_token.runtime.settings import Settings

NS, NAME = "team-a", "app"


async def issued(h: Harness, provider_type: str, namespace: str = NS, **spec: object) -> ProviderInfo:
    """A provider and a token with a day-long key (longer than any clock step below)."""
    provider = await h.create_provider(provider_type, namespace=namespace)
    spec.setdefault("duration", "24h")
    await h.create_token(namespace, NAME, provider, **spec)
    await h.reconcile_token(namespace, NAME)
    assert h.condition(namespace, NAME)["status"] == "True", h.status(namespace, NAME)
    return provider


async def rotated(h: Harness, namespace: str = NS) -> tuple[str, str]:
    """(old, new) key ids after a manual renewal; the old one waits out its grace."""
    old = h.status(namespace, NAME)["keyId"]
    await h.renew(namespace, NAME)
    new = h.status(namespace, NAME)["keyId"]
    assert new != old
    return old, new


async def make_b2_key(h: Harness, name: str) -> str:
    """A key created at the B2 account behind the operator's back (another install, a human)."""
    emulator = h.emulators.emulator("b2")
    account = h.emulators.credentials("b2")
    client = B2Provider(
        account["applicationKeyId"], account["applicationKey"], endpoint=emulator.url, allow_insecure=True
    )
    try:
        return (await client.issue(KeySpec(name=name, permissions=("read",), duration_seconds=86400))).key_id
    finally:
        await client.aclose()


async def another_install(h: Harness, **settings: object) -> Harness:
    """A second operator on the same provider account, in a cluster of its own (its own API)."""
    values: dict[str, object] = {"cluster_id": "other", "operator_namespace": "storage-token-system"}
    values.update(settings)
    kube = FakeKube()
    kube.create_namespace("storage-token-system")
    return Harness(kube, h.emulators, Settings(**values), h.now)  # type: ignore[arg-type]


async def close_install(other: Harness) -> None:
    await other.operator.stop()
    # (the emulators belong to the first harness, which stops them)


# -- 1. the sweep and install identity ------------------------------------------------------------
async def test_cluster_prod_never_sweeps_the_keys_of_cluster_prod_eu_1() -> None:
    h = await Harness.start(cluster_id="prod", sweep_min_age=timedelta(0))
    other = await another_install(h, cluster_id="prod-eu-1", sweep_min_age=timedelta(0))
    try:
        # With the old `sto-<id>-` prefix, prod-eu-1's key for namespace team-a read as prod's
        # key for namespace "eu-1-team-a" and was revoked as an orphan.
        await issued(h, "b2")
        await issued(other, "b2")
        theirs = other.status(NS, NAME)["keyId"]
        mine = h.status(NS, NAME)["keyId"]
        for _ in range(2):
            h.advance(minutes=30)
            other.set_now(h.now)
            await h.sweep()
            await other.sweep()
        live = {k.key_id for k in h.keys_at_provider("b2", ours=False)}
        assert {mine, theirs} <= live
    finally:
        await close_install(other)
        await h.close()


async def test_two_namespaced_installs_with_default_settings_keep_apart() -> None:
    # Same (derived) cluster id, different operator namespaces: different install identities.
    h = await Harness.start(cluster_id="same-cluster", operator_namespace="ops-a", sweep_min_age=timedelta(0))
    other = await another_install(h, cluster_id="same-cluster", operator_namespace="ops-b", sweep_min_age=timedelta(0))
    try:
        assert h.prefix != other.prefix
        await issued(h, "b2")
        await issued(other, "b2")
        keys = {h.status(NS, NAME)["keyId"], other.status(NS, NAME)["keyId"]}
        h.advance(minutes=30)
        other.set_now(h.now)
        await h.sweep()
        await other.sweep()
        assert keys <= {k.key_id for k in h.keys_at_provider("b2", ours=False)}
    finally:
        await close_install(other)
        await h.close()


async def test_the_sweep_leaves_human_keys_and_keys_of_another_shape_alone() -> None:
    h = await Harness.start(cluster_id="default", sweep_min_age=timedelta(0))
    try:
        await issued(h, "b2")
        untouchable = [
            await make_b2_key(h, "sto-default-x"),  # a human's key, the old scheme's prefix
            await make_b2_key(h, f"{h.prefix}handmade"),  # our prefix, not our shape
        ]
        h.advance(hours=1)
        await h.sweep()
        await h.sweep()
        live = {k.key_id for k in h.keys_at_provider("b2", ours=False)}
        assert set(untouchable) <= live
    finally:
        await h.close()


async def test_the_sweep_still_revokes_a_leftover_of_a_live_token() -> None:
    """The safety net keeps working: an unreferenced key of an existing token is revoked."""
    h = await Harness.start(sweep_min_age=timedelta(0))
    try:
        await issued(h, "b2")
        token = h.token(NS, NAME)
        assert token is not None
        uid8 = token["metadata"]["uid"].replace("-", "")[:8]
        leftover = await make_b2_key(h, f"{h.prefix}{NS}-{NAME}-{uid8}-r99")
        h.advance(minutes=1)
        await h.sweep()
        assert leftover not in h.live_key_ids("b2")
        assert h.status(NS, NAME)["keyId"] in h.live_key_ids("b2")
        h.check_invariants()
    finally:
        await h.close()


async def test_a_retained_key_survives_every_later_sweep(harness: Harness) -> None:
    h = harness
    await h.restart(sweep_min_age=timedelta(0))
    await issued(h, "b2", deletionPolicy="Retain")
    retained = h.status(NS, NAME)["keyId"]
    assert await h.delete_token(NS, NAME) is None
    for _ in range(3):
        h.advance(minutes=20)
        await h.sweep()
    assert retained in h.live_key_ids("b2"), "deletionPolicy: Retain was undone by the sweep"


# -- 2. deletion ------------------------------------------------------------------------------------
async def test_deleting_the_namespace_revokes_current_and_queued_keys(harness: Harness, provider_type: str) -> None:
    h = harness
    await issued(h, provider_type, revokeGracePeriod="1h")
    old, new = await rotated(h)
    assert {old, new} <= h.live_key_ids(provider_type)

    await h.delete_namespace(NS)

    assert h.live_key_ids(provider_type) == set(), "a key outlived its namespace"
    assert h.kube.list_of("StorageToken") == []
    assert h.kube.list_of("StorageProvider") == [], "the provider is released once no token needs it"
    assert [s for s in h.kube.list_of("Secret") if s["metadata"]["namespace"] == NS] == []


async def test_kubectl_delete_f_in_file_order_revokes_before_anything_goes(
    harness: Harness, provider_type: str
) -> None:
    h = harness
    provider = await issued(h, provider_type)
    key = h.status(NS, NAME)["keyId"]
    # README's example file: the credentials Secret, the provider, then the token.
    h.kube.delete("Secret", provider.secret_namespace, provider.secret_name)
    h.kube.delete(provider.kind, NS, provider.name)
    h.kube.delete("StorageToken", NS, NAME)
    assert h.provider(provider) is not None, "the provider waits for its tokens"
    assert h.kube.get("Secret", provider.secret_namespace, provider.secret_name) is not None

    await h.reconcile_all()

    assert key not in h.live_key_ids(provider_type)
    assert h.token(NS, NAME) is None
    assert h.provider(provider) is None
    assert h.kube.get("Secret", provider.secret_namespace, provider.secret_name) is None


async def test_providers_and_credentials_carry_finalizers_while_tokens_need_them(harness: Harness) -> None:
    h = harness
    provider = await issued(h, "b2")
    body = h.provider(provider)
    secret = h.kube.get("Secret", provider.secret_namespace, provider.secret_name)
    assert body is not None and secret is not None
    assert PROVIDER_FINALIZER in body["metadata"]["finalizers"]
    assert CREDENTIALS_FINALIZER in secret["metadata"]["finalizers"]


async def test_a_token_whose_provider_vanished_keeps_its_finalizer_and_says_why(harness: Harness) -> None:
    h = harness
    provider = await issued(h, "b2")
    key = h.status(NS, NAME)["keyId"]
    # The provider is force-removed (finalizers stripped by hand): no revocation can be confirmed.
    h.kube.update(provider.kind, NS, provider.name, {"metadata": {"finalizers": None}})
    h.kube.delete(provider.kind, NS, provider.name)
    assert h.provider(provider) is None

    left = await h.delete_token(NS, NAME)

    assert left is not None and FINALIZER in left["metadata"]["finalizers"], "released without a revocation"
    ready = h.condition(NS, NAME)
    assert ready["reason"] == "RevokingKeys" and ABANDON_ANNOTATION in ready["message"]
    assert key in h.live_key_ids("b2")
    # The explicit way out: the owner accepts that the key expires on its own.
    h.kube.update("StorageToken", NS, NAME, {"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}})
    assert await h.reconcile_token(NS, NAME) is None


async def test_missing_credentials_keep_the_token_until_they_are_back(harness: Harness) -> None:
    h = harness
    provider = await issued(h, "b2")
    key = h.status(NS, NAME)["keyId"]
    h.kube.update("Secret", provider.secret_namespace, provider.secret_name, {"metadata": {"finalizers": None}})
    h.kube.delete("Secret", provider.secret_namespace, provider.secret_name)
    h.operator.manager.pool.invalidate(provider.secret_namespace, provider.secret_name)

    left = await h.delete_token(NS, NAME)

    assert left is not None, "the finalizer went although no revocation happened"
    assert key in h.live_key_ids("b2")


# -- 3. a broken spec or a lost admission never freezes revocation ----------------------------------
async def test_a_broken_template_does_not_freeze_queued_revocations(harness: Harness, provider_type: str) -> None:
    h = harness
    await issued(h, provider_type, revokeGracePeriod="5m")
    old, new = await rotated(h)
    await h.update_spec(NS, NAME, {"secret": {"template": {"data": {"x": "{{ 1 // 0 }}"}}}})
    assert h.condition(NS, NAME)["reason"] == "TemplateError"

    h.advance(minutes=5, seconds=1)
    await h.reconcile_token(NS, NAME)
    assert old not in h.live_key_ids(provider_type), "the replaced key outlived its grace"
    h.advance(minutes=5, seconds=1)
    await h.reconcile_token(NS, NAME)
    assert new not in h.live_key_ids(provider_type), "a broken spec kept its key past the grace"
    assert h.secret(NS, NAME) is None, "the Secret would hold a revoked key"
    h.check_invariants()


async def test_offboarding_a_namespace_from_a_cluster_provider_revokes_its_key(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2", cluster=True, namespaces=[NS])
    await h.create_token(NS, NAME, provider, revokeGracePeriod="5m")
    await h.reconcile_token(NS, NAME)
    key = h.status(NS, NAME)["keyId"]
    assert key

    h.kube.update(provider.kind, None, provider.name, {"spec": {"namespaces": ["team-b"]}})
    await h.reconcile_all()
    assert h.condition(NS, NAME)["reason"] == "NamespaceNotAllowed"
    assert key in h.live_key_ids("b2"), "the grace period applies"

    h.advance(minutes=5, seconds=1)
    await h.reconcile_all()
    assert key not in h.live_key_ids("b2")
    assert h.secret(NS, NAME) is None
    h.check_invariants()


async def test_deleting_the_provider_revokes_its_tokens_keys_then_lets_it_go(harness: Harness) -> None:
    h = harness
    provider = await issued(h, "b2", revokeGracePeriod="5m")
    key = h.status(NS, NAME)["keyId"]
    await h.delete_provider(provider)
    assert h.provider(provider) is not None, "the provider waits while a token holds one of its keys"
    assert h.condition(NS, NAME)["reason"] == "ProviderDeleted"

    h.advance(minutes=5, seconds=1)
    await h.reconcile_all()
    assert key not in h.live_key_ids("b2")
    assert h.provider(provider) is None
    assert h.token(NS, NAME) is not None, "the token stays, blocked, until a provider is back"


async def test_a_narrowed_ceiling_revokes_even_while_the_provider_is_not_ready(harness: Harness) -> None:
    h = harness
    provider = await issued(h, "b2", revokeGracePeriod="5m")
    key = h.status(NS, NAME)["keyId"]
    h.kube.update(provider.kind, NS, provider.name, {"spec": {"policy": {"allowedBuckets": ["nothing-*"]}}})
    h.emulators.emulator("b2").faults.inject("status", "b2_authorize_account", status=503, times=None)
    h.operator.manager.pool.invalidate(provider.secret_namespace, provider.secret_name)
    await h.reconcile_all()
    assert h.condition(NS, NAME)["reason"] == "PolicyViolation"
    h.emulators.emulator("b2").faults.clear()
    h.advance(minutes=5, seconds=1)
    await h.reconcile_all()
    assert key not in h.live_key_ids("b2")


# -- 4. intents ----------------------------------------------------------------------------------------
async def test_an_intent_left_while_blocked_has_its_key_revoked(harness: Harness, provider_type: str) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    await h.create_token(NS, NAME, provider)
    h.arm_crash(AFTER_CREATE, token=NAME)
    await h.reconcile_until_crash(NS, NAME)
    assert h.status(NS, NAME)["intent"]
    await h.restart()
    # Before the restarted operator looks, the ceiling narrows: the token is blocked with an intent.
    h.kube.update(provider.kind, NS, provider.name, {"spec": {"policy": {"allowedBuckets": ["nothing-*"]}}})
    await h.reconcile_all()

    assert h.condition(NS, NAME)["reason"] == "PolicyViolation"
    assert "intent" not in h.status(NS, NAME)
    assert h.live_key_ids(provider_type) == set(), "the interrupted create's key lives on, unreferenced"
    h.check_invariants()


async def test_recovery_does_not_adopt_a_key_asked_for_an_older_spec(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("us3")
    await h.create_token(NS, NAME, provider, permissions=["read", "write", "delete", "list"])
    h.arm_crash(AFTER_CREATE, token=NAME)
    await h.reconcile_until_crash(NS, NAME)
    created = h.live_key_ids("us3")
    assert len(created) == 1
    await h.restart()
    await h.update_spec(NS, NAME, {"permissions": ["read"]})

    status = h.status(NS, NAME)
    assert status["keyId"] not in created, "a key with the old, wider scope was adopted"
    assert h.live_key_ids("us3") == {status["keyId"]}
    key = next(k for k in h.keys_at_provider("us3") if k.key_id == status["keyId"])
    secret = h.secret(NS, NAME)
    assert secret is not None
    assert base64.b64decode(secret["data"]["accessKeyId"]).decode() == key.access_key_id
    h.check_invariants()


# -- 6. readiness --------------------------------------------------------------------------------------
async def test_ready_stays_true_while_the_secret_holds_a_valid_key(harness: Harness) -> None:
    h = harness
    await issued(h, "b2")
    h.emulators.emulator("b2").faults.inject("status", "b2_create_key", status=503, times=None)
    await h.renew(NS, NAME)

    assert h.condition(NS, NAME, "Issuing")["reason"] == "ProviderUnavailable"
    ready = h.condition(NS, NAME)
    assert ready["status"] == "True", ready
    assert "renewal failing" in ready["message"]


# -- minting limits (hostile tenants) ---------------------------------------------------------------
async def test_a_renew_annotation_loop_is_rate_limited(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2", policy={"allowedBuckets": ["*"], "minManualRenewInterval": "1m"})
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="1h")
    await h.reconcile_token(NS, NAME)
    h.advance(minutes=2)
    for attempt in range(5):
        await h.renew(NS, NAME, value=f"loop-{attempt}")
    # The default policy acts on one manual renewal per minute after an issuance: one went ahead.
    assert h.status(NS, NAME)["revision"] == 2
    assert h.condition(NS, NAME, "Issuing")["reason"] == "RenewalRateLimited"
    assert len(h.live_key_ids("b2")) == 2
    h.advance(minutes=1, seconds=1)
    await h.reconcile_token(NS, NAME)
    assert h.status(NS, NAME)["revision"] == 3, "the waiting renewal goes ahead once allowed"


async def test_live_keys_per_token_are_capped_by_policy(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider(
        "b2", policy={"allowedBuckets": ["*"], "maxLiveKeys": 3, "minManualRenewInterval": "0s"}
    )
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="1h")
    await h.reconcile_token(NS, NAME)
    for attempt in range(6):
        await h.renew(NS, NAME, value=f"mint-{attempt}")
    assert len(h.live_key_ids("b2")) == 3, "more keys live than the provider's maxLiveKeys"
    assert h.condition(NS, NAME, "Issuing")["reason"] == "TooManyLiveKeys"
    assert h.condition(NS, NAME)["status"] == "True", "the current key stays valid"
    h.advance(hours=1, seconds=1)
    await h.reconcile_token(NS, NAME)
    assert len(h.live_key_ids("b2")) <= 3
    h.check_invariants()


# -- bad input found only after the key exists (review M2) -------------------------------------------
async def test_a_template_failing_only_on_the_real_key_revokes_it_and_backs_off(
    harness: Harness, provider_type: str
) -> None:
    h = harness
    provider = await h.create_provider(provider_type)
    # The rehearsal's placeholder keys are all zeros; a real key is not, so this fails only for real.
    template = {"data": {"x": "{% if '0000' not in secretAccessKey %}{{ 1 // 0 }}{% endif %}"}}
    await h.create_token(NS, NAME, provider, secret={"template": template})
    await h.reconcile_token(NS, NAME)

    status = h.status(NS, NAME)
    assert h.condition(NS, NAME)["reason"] == "TemplateError"
    assert status["failedAttempts"] == 1 and status["nextAttempt"]
    assert h.live_key_ids(provider_type) == set(), "the key that could not be written lives on"
    created = len(h.keys_at_provider(provider_type, live_only=False))
    for _ in range(5):  # reconciles before the backoff ends mint nothing
        await h.reconcile_token(NS, NAME)
    assert len(h.keys_at_provider(provider_type, live_only=False)) == created
    h.check_invariants()


async def test_template_errors_never_carry_key_material(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    template = {
        "data": {"x": "{% if '0000' not in secretAccessKey %}{{ [1] | select(secretAccessKey) | list }}{% endif %}"}
    }
    await h.create_token(NS, NAME, provider, secret={"template": template})
    await h.reconcile_token(NS, NAME)
    secrets = {s for s in h.emulators.issued_secrets("b2") if len(s) >= 8}
    assert secrets
    events = h.kube.events
    assert any(e.get("reason") == "TemplateError" for e in events), "the scan would prove nothing"
    text = str(h.status(NS, NAME)) + str(events)
    for secret in secrets:
        pieces = {secret[i : i + 6] for i in range(len(secret) - 5)}
        assert not any(piece in text for piece in pieces), "a piece of the secret key reached status or events"


async def test_a_namespace_being_deleted_mints_no_key_for_the_secret_it_deleted_first() -> None:
    """The namespace controller deletes a token's Secret before the token's own deletion is seen: that
    is not drift to repair (a new key could be written nowhere), so no key is created (found in CI:
    one extra key per token of every namespace torn down)."""
    h = await Harness.start()
    try:
        provider = await h.create_provider("b2")
        await h.create_token("team-a", "app", provider)
        await h.reconcile_token("team-a", "app")
        keys = len(h.keys_at_provider("b2", live_only=False))
        # The namespace controller's first moves: the namespace terminates, the Secret is gone, and
        # the token's own deletion is not seen yet.
        h.kube.namespaces["team-a"]["status"] = {"phase": "Terminating"}
        h.kube.delete("Secret", "team-a", "app")
        await h.reconcile_token("team-a", "app")
        assert len(h.keys_at_provider("b2", live_only=False)) == keys
    finally:
        await h.close()
