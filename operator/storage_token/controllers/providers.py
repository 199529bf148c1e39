"""The provider reconciler: verify an account's credentials with a real call and say so in status."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from storage_token.config import Settings
from storage_token.controllers.tokens import error_reason
from storage_token.kube.api import Kube
from storage_token.kube.events import EventRecorder
from storage_token.model.conditions import condition, set_condition
from storage_token.model.provider import CLUSTER_KIND, ProviderSpec
from storage_token.model.times import format_time
from storage_token.policy import reasons
from storage_token.provider_pool import CredentialsSecretMissing, ProviderPool
from storage_token.providers.errors import ProviderError

log = logging.getLogger(__name__)


class ProviderController:
    def __init__(
        self,
        kube: Kube,
        pool: ProviderPool,
        events: EventRecorder,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube, self.pool, self.events, self.settings, self.clock = kube, pool, events, settings, clock

    async def reconcile(self, body: dict[str, Any]) -> tuple[datetime | None, bool]:
        """Check the account; returns (next check, whether Ready changed)."""
        meta = body["metadata"]
        kind = body.get("kind") or "StorageProvider"
        now = self.clock()
        spec = ProviderSpec.parse(body, credentials_namespace=self.settings.operator_namespace)
        status: dict[str, Any] = {"observedGeneration": meta.get("generation"), "lastChecked": format_time(now)}
        try:
            handle = await self.pool.get(spec)
            account = await handle.call(lambda p: p.check(), "check")
        except CredentialsSecretMissing as error:
            ready, reason, message = False, reasons.CREDENTIALS_SECRET_MISSING, error.message
        except ProviderError as error:
            ready, reason, message = False, error_reason(error), str(error)
        else:
            ready, reason = True, reasons.CREDENTIALS_VERIFIED
            message = f"credentials verified for account {account.account_id}"
            status["accountId"] = account.account_id
            status["s3Endpoint"] = spec.s3_endpoint or account.endpoint
        previous = condition((body.get("status") or {}).get("conditions"), "Ready")
        changed = previous is None or previous.get("status") != ("True" if ready else "False")
        status["conditions"] = set_condition(
            (body.get("status") or {}).get("conditions") or [],
            "Ready",
            ready,
            reason,
            message,
            now,
            int(meta.get("generation") or 0),
        )
        namespace = None if kind == CLUSTER_KIND else meta.get("namespace")
        await self.kube.patch_status(kind, namespace, meta["name"], {"status": status})
        if changed or (previous or {}).get("reason") != reason:
            await self.events.record(body, kind, reason, message, warning=not ready)
        interval = self.settings.provider_recheck_interval
        return now + (interval if ready else min(interval, interval / 5)), changed
