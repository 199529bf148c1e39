"""The provider reconciler: verify an account's credentials with a real call and say so in status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token.api.conditions import condition, set_condition
from storage_token.api.provider import CLUSTER_KIND, ProviderSpec
from storage_token.api.status_patch import ProviderStatusPatch
from storage_token.controllers.provider_release import ProviderRelease
from storage_token.controllers.tokens import error_reason
from storage_token.kube.api import Kube
from storage_token.kube.events import EventRecorder
from storage_token.policy import reasons
from storage_token.providers.errors import ProviderError, RetryableError
from storage_token.runtime.provider_pool import CredentialsSecretMissing, ProviderPool
from storage_token.runtime.settings import Settings

log = logging.getLogger(__name__)
RETRY_SOON = timedelta(seconds=15)  # a check that failed on an outage (5xx, 429, timeout) runs again this soon
FAILED_RECHECK = "; the last check failed "


class ProviderController:
    def __init__(
        self,
        kube: Kube,
        pool: ProviderPool,
        events: EventRecorder,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        release: ProviderRelease | None = None,
    ) -> None:
        self.kube, self.pool, self.events, self.settings, self.clock = kube, pool, events, settings, clock
        # Finalizers that keep a provider while tokens still need it (None: no protection, e.g. in tests).
        self.release = release

    async def reconcile(self, body: dict[str, Any]) -> tuple[datetime | None, bool]:
        """Check the account; returns (next check, whether Ready changed)."""
        meta = body["metadata"]
        kind = body.get("kind") or "StorageProvider"
        now = self.clock()
        spec = ProviderSpec.parse(body, credentials_namespace=self.settings.operator_namespace)
        if self.release is not None:
            if meta.get("deletionTimestamp"):
                return await self._deleting(body, spec, now), False
            body = await self.release.protect(body, spec)
        status = ProviderStatusPatch(observed_generation=int(meta.get("generation") or 0), last_checked=now)
        previous = condition((body.get("status") or {}).get("conditions"), "Ready")
        passing_outage = False
        try:
            handle = await self.pool.get(spec)
            account = await handle.call(lambda p: p.check(), "check")
        except CredentialsSecretMissing as error:
            ready, reason, message = False, reasons.CREDENTIALS_SECRET_MISSING, error.message
        except RetryableError as error:
            # An outage says nothing about the credentials: verified ones stay Ready (the tokens' own calls
            # fail and back off by themselves), and the check runs again soon.
            passing_outage = True
            ready, reason, message = False, error_reason(error), str(error)
            generation = int(meta.get("generation") or 0)
            if (
                previous is not None
                and previous.get("status") == "True"
                and previous.get("observedGeneration") == generation
            ):
                verified = str(previous.get("message") or "").split(FAILED_RECHECK)[0]
                ready, reason = True, str(previous.get("reason") or reasons.CREDENTIALS_VERIFIED)
                message = f"{verified}{FAILED_RECHECK}({error_reason(error)}): {error}"
        except ProviderError as error:
            ready, reason, message = False, error_reason(error), str(error)
        else:
            ready, reason = True, reasons.CREDENTIALS_VERIFIED
            message = f"credentials verified for account {account.account_id}"
            if account.project_id:  # US3: the configured project, or the account default it resolved to
                message += f" (project {account.project_id})"
            status.account_id = account.account_id
            status.s3_endpoint = spec.s3_endpoint or account.endpoint
        changed = previous is None or previous.get("status") != ("True" if ready else "False")
        status.conditions = set_condition(
            (body.get("status") or {}).get("conditions") or [],
            "Ready",
            ready,
            reason,
            message,
            now,
            int(meta.get("generation") or 0),
        )
        namespace = None if kind == CLUSTER_KIND else meta.get("namespace")
        await self.kube.patch_status(kind, namespace, meta["name"], {"status": status.to_status()})
        if changed or (previous or {}).get("reason") != reason:
            await self.events.record(body, kind, reason, message, warning=not ready)
        interval = self.settings.provider_recheck_interval
        if passing_outage:
            return now + min(interval, RETRY_SOON), changed
        return now + (interval if ready else min(interval, interval / 5)), changed

    async def _deleting(self, body: dict[str, Any], spec: ProviderSpec, now: datetime) -> datetime | None:
        """Being deleted: wait until no token needs this provider to revoke a key, then let it go."""
        assert self.release is not None
        needing = await self.release.release(body, spec)
        if not needing:
            return None
        meta = body["metadata"]
        shown = ", ".join(needing[:5]) + (f" and {len(needing) - 5} more" if len(needing) > 5 else "")
        message = (
            f"deletion waits until {len(needing)} StorageToken(s) revoked their keys through this provider: {shown}"
        )
        previous = condition((body.get("status") or {}).get("conditions"), "Ready")
        if previous is None or previous.get("reason") != reasons.REVOKING_KEYS or previous.get("message") != message:
            conditions = set_condition(
                (body.get("status") or {}).get("conditions") or [],
                "Ready",
                False,
                reasons.REVOKING_KEYS,
                message,
                now,
                int(meta.get("generation") or 0),
            )
            namespace = None if spec.kind == CLUSTER_KIND else meta.get("namespace")
            await self.kube.patch_status(
                spec.kind, namespace, meta["name"], {"status": ProviderStatusPatch(conditions=conditions).to_status()}
            )
            await self.events.record(body, spec.kind, reasons.REVOKING_KEYS, message)
        # Token deletions queue this provider again; look anyway in case an event was missed.
        return now + timedelta(seconds=30)
