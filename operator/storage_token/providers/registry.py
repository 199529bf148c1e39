"""Build a provider client from its kind and plain settings."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from storage_token.providers.base import Provider
from storage_token.providers.errors import CredentialsError
from storage_token.providers.retry import RetryPolicy

KINDS = ("us3", "b2")
B2_DEFAULT_ENDPOINT = "https://api.backblazeb2.com"

# Keys of the account-credentials Secret (and the CLI's environment variables).
CREDENTIAL_KEYS: dict[str, tuple[str, str]] = {
    "us3": ("publicKey", "privateKey"),
    "b2": ("applicationKeyId", "applicationKey"),
}
CREDENTIAL_ENV: dict[str, tuple[str, str]] = {
    "us3": ("UCLOUD_PUBLIC_KEY", "UCLOUD_PRIVATE_KEY"),
    "b2": ("B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY"),
}


def build_provider(
    kind: str,
    *,
    credentials: Mapping[str, str],
    endpoint: str | None = None,
    region: str = "",
    project_id: str = "",
    s3_endpoint: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 10.0,
    allow_insecure: bool = False,
) -> Provider:
    """`credentials` holds the two keys of CREDENTIAL_KEYS[kind]; plain http endpoints need `allow_insecure`."""
    id_key, secret_key = CREDENTIAL_KEYS[kind]
    key_id, secret = credentials.get(id_key, ""), credentials.get(secret_key, "")
    if not key_id or not secret:
        raise CredentialsError(f"credentials need both {id_key!r} and {secret_key!r}", provider=kind)
    policy = retry or RetryPolicy()
    if kind == "us3":
        from storage_token.providers.us3 import US3Provider

        if not endpoint:
            raise ValueError("us3 needs an endpoint")
        return US3Provider(
            endpoint,
            key_id,
            secret,
            region=region,
            project_id=project_id,
            s3_endpoint=s3_endpoint,
            transport=transport,
            retry=policy,
            timeout=timeout,
            allow_insecure=allow_insecure,
        )
    if kind == "b2":
        from storage_token.providers.b2 import B2Provider

        return B2Provider(
            key_id,
            secret,
            endpoint=endpoint or B2_DEFAULT_ENDPOINT,
            transport=transport,
            retry=policy,
            timeout=timeout,
            s3_endpoint=s3_endpoint,
            allow_insecure=allow_insecure,
        )
    raise ValueError(f"unknown provider kind {kind!r}; known: {', '.join(KINDS)}")
