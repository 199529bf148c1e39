"""`kubectl storage-token inspect` masks what the template wrote when the Secret was written, even
after the spec stopped saying so (attacker review: the secret put under a visible key, then the
template edited while the old Secret stays)."""

from __future__ import annotations

from harness import Harness

from storage_token.process.plugin_cli import inspect_lines

NS, NAME = "team-a", "app"


async def test_a_key_the_template_wrote_stays_masked_after_the_template_changes(harness: Harness) -> None:
    h = harness
    provider = await h.create_provider("b2")
    secret = {"template": {"preset": "default", "data": {"region": "{{ secretAccessKey }}"}}}
    await h.create_token(NS, NAME, provider, duration="24h", revokeGracePeriod="12h", secret=secret)
    await h.reconcile_token(NS, NAME)
    key = next(k for k in h.keys_at_provider("b2") if k.key_id == h.status(NS, NAME)["keyId"])
    # A broken template blocks issuing, so the Secret written by the old one stays for the grace period.
    broken = {"preset": "default", "data": {"region": None, "x": "{{ nope( }}"}}
    await h.update_spec(NS, NAME, {"secret": {"template": broken}})
    template = h.token(NS, NAME)["spec"]["secret"]["template"]["data"]
    assert "region" not in template
    rows = dict(inspect_lines(h.secret(NS, NAME), template))
    assert key.secret not in "\n".join(rows.values())
    assert rows["region"].endswith("from the template")
