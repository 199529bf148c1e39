"""After a restart relists every token, an overdue revocation is served before the check-ups of healthy tokens.

The chaos run measured revocations 10-40 s late after SIGKILLs: the queue ranked a token by its current
key's expiry, and the token that just rotated (the one with a revocation queued) has the latest expiry,
so it waited behind every other token of its namespace.
"""

from __future__ import annotations

from harness import Harness

NAMESPACE = "team-a"


async def test_an_overdue_revocation_goes_first_after_a_restart() -> None:
    h = await Harness.start()
    try:
        provider = await h.create_provider("b2", NAMESPACE)
        spec = {"duration": "15m", "renewBefore": "4m", "revokeGracePeriod": "5s"}
        for i in range(20):  # healthy tokens: their keys expire in under 5 minutes, not yet due for renewal
            await h.create_token(NAMESPACE, f"healthy{i:02}", provider, reconcile=True, **spec)
        await h.create_token(NAMESPACE, "rotated", provider, reconcile=True, **spec)
        h.advance(seconds=630)
        await h.renew(NAMESPACE, "rotated")  # a new key; the old one is queued for revocation in 5 s
        assert h.status(NAMESPACE, "rotated")["revision"] == 2
        assert len(h.status(NAMESPACE, "rotated")["pendingRevocations"]) == 1
        h.advance(seconds=10)  # the revocation came due while no operator ran
        await h.restart()
        queue = h.operator.manager.token_queue
        first = await queue.get()
        assert first == (NAMESPACE, "rotated"), first
    finally:
        await h.close()
