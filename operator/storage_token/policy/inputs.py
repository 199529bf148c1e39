"""The one value every check reads: gathered from the cluster and the provider, then frozen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage_token.api.provider import ProviderSpec
from storage_token.api.token import TokenSpec, TokenStatus


@dataclass(frozen=True)
class SecretState:
    """The target Secret as the checks need it (never its data)."""

    exists: bool = False
    owned: bool = False  # controlled by this StorageToken
    key_id_hash: str = ""  # hash of the key id the operator wrote it with (annotation)
    intact: bool = False  # its data still hashes to what the operator wrote


@dataclass(frozen=True)
class ProviderState:
    """The referenced provider, or why it can't be used."""

    spec: ProviderSpec | None = None
    ready: bool = False
    problem_reason: str = ""  # set when spec is None or not usable
    problem_message: str = ""


@dataclass(frozen=True)
class PolicyInput:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: TokenSpec
    spec_hash: str
    status: TokenStatus
    secret: SecretState
    provider: ProviderState
    now: datetime
    renew_request: str = ""  # value of the manual-renewal annotation
    handled_renew_request: str = ""  # the last value acted on (status)
    key_live: bool | None = None  # the provider still has the current key; None when not checked
    current_key_id_hash: str = ""  # hash of status.keyId, as the Secret's annotation spells it
