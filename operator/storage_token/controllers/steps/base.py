"""What every step of the StorageToken reconciler shares: its collaborators, status writes, the provider
that issued a key, single revocations, and the clean-up of Secrets that hold a dead key."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from storage_token.api.naming import key_name
from storage_token.api.status_patch import StatusPatch
from storage_token.api.token import PendingRevocation, ProviderRef, TokenSpec, TokenStatus
from storage_token.controllers.gather import resolve_provider
from storage_token.controllers.secret_writer import (
    ANNOTATION_KEY_ID_HASH,
    ANNOTATION_REVISION,
    is_owned_by,
    key_id_hash,
)
from storage_token.kube.api import Conflict, Kube
from storage_token.kube.events import EventRecorder
from storage_token.policy import reasons
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)
from storage_token.runtime import metrics
from storage_token.runtime.provider_pool import ProviderHandle, ProviderPool
from storage_token.runtime.settings import Settings
from storage_token.runtime.shared_state import SharedState
from storage_token.secrets.worker import BoundedRenderer

log = logging.getLogger(__name__)

FINALIZER = "storagetoken.dev/revoke-keys"
# Set on a token being deleted to let it go without revoking (the keys then expire on their own).
ABANDON_ANNOTATION = "storagetoken.dev/abandon-keys"
KIND = "StorageToken"
DEFAULT_GRACE = timedelta(minutes=5)
RENDER_RETRY = timedelta(seconds=30)  # the render workers could not start
RESTART_ANNOTATION = "storagetoken.dev/restartedAt"

_ERROR_REASONS: tuple[tuple[type[ProviderError], str], ...] = (
    (RetryableError, reasons.PROVIDER_UNAVAILABLE),
    (CredentialsError, reasons.CREDENTIALS_INVALID),
    (PermissionDeniedError, reasons.PERMISSION_DENIED),
    (QuotaExceededError, reasons.QUOTA_EXCEEDED),
    (BadRequestError, reasons.REJECTED_BY_PROVIDER),
)


def unreachable(provider: str) -> ProviderError:
    return RetryableError(f"provider {provider} of an interrupted issuance can't be reached yet", call="recover")


def where(meta: dict[str, Any]) -> tuple[str, str]:
    return meta["namespace"], meta["name"]


def error_reason(error: ProviderError) -> str:
    return next((reason for cls, reason in _ERROR_REASONS if isinstance(error, cls)), reasons.ISSUE_FAILED)


@dataclass
class Unwritten:
    """A status change one step made and left to the next step to write together with its own: one
    write instead of two (a finished rollout and the revocation it releases)."""

    patch: StatusPatch
    base: dict[str, Any]  # the body as read: the write is conditional on its version
    after: Callable[[], Awaitable[None]] | None = None  # what follows a successful write (its event)


@dataclass(frozen=True)
class SecretRead:
    """The token's Secret as this reconcile read it: until we write or delete it, the read still stands
    and a later step needs no read of its own."""

    name: str
    body: dict[str, Any] | None
    touches: int  # SharedState.secret_touches when it was read


@dataclass
class Outcome:
    """What a reconcile leaves behind: when to look again, and the latest body it wrote (or, with
    `unwritten`, the body as that change would leave it, for the next step to act on)."""

    wakeup: datetime | None = None
    body: dict[str, Any] | None = None
    unwritten: Unwritten | None = None


class TokenSteps:
    """The collaborators and the small operations every step uses."""

    def __init__(
        self,
        kube: Kube,
        pool: ProviderPool,
        events: EventRecorder,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        renderer: BoundedRenderer | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.kube, self.pool, self.events, self.settings, self.clock = kube, pool, events, settings, clock
        # Tenant templates render in bounded worker processes, never on the event loop.
        self.renderer = renderer or BoundedRenderer(workers=2)  # one slow template never holds every render
        self.shared = shared or SharedState()

    def _key_name(self, meta: dict[str, Any], revision: int) -> str:
        return key_name(self.settings.install_digest, meta["namespace"], meta["name"], meta["uid"], revision)

    async def _patch_status(self, token: dict[str, Any], patch: StatusPatch) -> dict[str, Any] | None:
        meta = token["metadata"]
        # Conditional on the version this reconcile read: a stale writer (an old leader, a lagging cache)
        # gets a Conflict instead of silently overwriting newer status.
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch.to_status()}
        try:
            written = await self.kube.patch_status(KIND, meta["namespace"], meta["name"], body)
        except Conflict:
            return None
        if written is not None:
            self.shared.on_written(written)
        return written

    def _secret_read(self, namespace: str, name: str, body: dict[str, Any] | None) -> SecretRead:
        return SecretRead(name, body, self.shared.secret_touches.get((namespace, name), 0))

    async def _current_secret(self, namespace: str, name: str, read: SecretRead | None) -> dict[str, Any] | None:
        """The Secret: as read earlier in this reconcile if nothing of ours wrote it since, else read now."""
        if (
            read is not None
            and read.name == name
            and self.shared.secret_touches.get((namespace, name), 0) == read.touches
        ):
            return read.body
        return await self.kube.get_secret(namespace, name)

    async def _write_unwritten(self, unwritten: Unwritten, patch: StatusPatch) -> dict[str, Any] | None:
        """The change left by an earlier step and this step's `patch`, in one write."""
        written = await self._patch_status(unwritten.base, unwritten.patch.then(patch))
        if written is not None and unwritten.after is not None:
            await unwritten.after()
        return written

    async def _handle_for(self, token: dict[str, Any], provider: str) -> ProviderHandle | None:
        """The client of the provider that issued a key ("Kind/name"), ready or not: revoking is always safe."""
        if provider:
            kind, _, name = provider.partition("/")
            ref = ProviderRef(kind, name)
        else:
            ref = TokenSpec.parse(token.get("spec") or {}, default_secret_name="").provider_ref
        state = await resolve_provider(
            self.kube, self.settings, ref, token["metadata"]["namespace"], self.shared.providers
        )
        if state.spec is None:
            return None
        return await self.pool.get(state.spec)

    @staticmethod
    def _grace(token: dict[str, Any]) -> timedelta:
        try:
            return TokenSpec.parse(token.get("spec") or {}, default_secret_name="").revoke_grace_period
        except ValueError:
            return DEFAULT_GRACE  # a spec too broken to read its grace gets the documented default

    async def _revoke(self, token: dict[str, Any], entry: PendingRevocation) -> str | None:
        """Revoke one key; None on success, else the error text (never key material)."""
        try:
            handle = await self._handle_for(token, entry.provider)
            if handle is None:
                return f"provider {entry.provider or 'of this token'} not found; retrying until it is back"
            await handle.call(lambda p: p.revoke(entry.key_id), "revoke")
        except NotFoundError:
            pass  # the provider says the key is gone: that is the confirmation we wait for
        except ValueError as error:  # no provider recorded and a spec too broken to name one
            return str(error)
        except ProviderError as error:
            metrics.record_revocation("failure")
            await self.events.record(
                token, KIND, reasons.REVOKE_FAILED, f"revoking key {entry.key_name} failed: {error}", warning=True
            )
            return str(error)
        metrics.record_revocation("revoked")
        self.shared.missing_keys.discard(entry.key_id)
        await self.events.record(token, KIND, reasons.REVOKED, f"revoked key {entry.key_name}", routine=True)
        return None

    async def _resolve_abandoned_intent(
        self, token: dict[str, Any], status: TokenStatus, now: datetime
    ) -> list[PendingRevocation] | None:
        """While blocked, an intent's key (if the create happened) is queued for revocation now.

        None when the provider can't be asked (the intent stays, and is retried)."""
        assert status.intent is not None
        name, revision = status.intent.key_name, status.intent.revision
        try:
            handle = await self._handle_for(token, status.intent.provider or status.provider)
            if handle is None:
                return None
            found = await handle.call(lambda p: p.recover(name), "recover")
        except (ProviderError, ValueError):
            return None
        # The crash may have come after the Secret write: that Secret holds the key being revoked.
        await self._delete_secret_of_revision(token, revision)
        if found is None:  # nothing was created, or B2 already deleted it by name
            return []
        provider = f"{handle.spec.kind}/{handle.spec.name}"
        return [PendingRevocation(found.key_id, found.key_name, now, provider=provider, not_after=found.not_after)]

    async def _delete_our_secrets(
        self,
        meta: dict[str, Any],
        names: set[str],
        holds: Callable[[dict[str, str]], bool] = lambda _: True,
        known: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """Delete each Secret of `names` that this token owns and whose annotations `holds` accepts
        (`known`: Secrets this reconcile has just read, by name)."""
        for name in sorted(names):
            if known is not None and name in known:
                secret = known[name]
            else:
                secret = await self.kube.get_secret(meta["namespace"], name)
            if secret is None or not is_owned_by(secret, meta["uid"]):
                continue
            if holds((secret.get("metadata") or {}).get("annotations") or {}):
                self.shared.touch_secret(meta["namespace"], name)
                await self.kube.delete_secret(meta["namespace"], name, uid=secret["metadata"]["uid"])

    async def _delete_dead_secret(
        self,
        token: dict[str, Any],
        revoked: list[PendingRevocation],
        known: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """A Secret of ours left holding a revoked key is deleted rather than left to mislead: the
        current Secret, and the Secret each key was recorded in (an old name after a rename)."""
        meta = token["metadata"]
        hashes = {key_id_hash(entry.key_id) for entry in revoked}
        names = {(token.get("status") or {}).get("secretName") or meta["name"]}
        names.update(entry.secret_name for entry in revoked if entry.secret_name)
        await self._delete_our_secrets(
            meta, names, lambda annotations: annotations.get(ANNOTATION_KEY_ID_HASH) in hashes, known
        )

    async def _delete_secret_of_revision(self, token: dict[str, Any], revision: int) -> None:
        """Delete our Secret if it was written for `revision` (whose key is being given up)."""
        meta = token["metadata"]
        names = {(token.get("status") or {}).get("secretName") or meta["name"]}
        names.add(((token.get("spec") or {}).get("secret") or {}).get("name") or meta["name"])
        await self._delete_our_secrets(
            meta, names, lambda annotations: annotations.get(ANNOTATION_REVISION) == str(revision)
        )
