"""B2 error answers (`{status, code, message}`) -> `ProviderError` kinds, in one place.

400 *                        BadRequestError
401 bad/expired_auth_token   re-authorize once (see `api`), then CredentialsError
401 on authorize             CredentialsError
401 other                    PermissionDeniedError
403 *_cap_exceeded           QuotaExceededError
403 other                    PermissionDeniedError
404                          NotFoundError
408, 429, 5xx                RetryableError (with Retry-After)
"""

from __future__ import annotations

from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)
from storage_token.providers.retry import parse_retry_after

__all__ = ["PROVIDER", "TOKEN_REJECTED", "error_for", "is_retryable_status", "parse_retry_after"]

PROVIDER = "b2"
TOKEN_REJECTED = frozenset({"bad_auth_token", "expired_auth_token"})


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def error_for(
    status: int,
    code: str,
    message: str,
    *,
    call: str,
    retry_after: float | None = None,
    authorizing: bool = False,
) -> ProviderError:
    """The error class a caller branches on, carrying B2's own code and message."""
    text = message or code or f"HTTP {status}"
    label = code or status
    if is_retryable_status(status):
        return RetryableError(text, provider=PROVIDER, call=call, code=label, retry_after=retry_after)
    if status == 401:
        if authorizing or code in TOKEN_REJECTED:
            return CredentialsError(text, provider=PROVIDER, call=call, code=label)
        return PermissionDeniedError(text, provider=PROVIDER, call=call, code=label)
    if status == 403:
        if code.endswith("cap_exceeded"):
            return QuotaExceededError(text, provider=PROVIDER, call=call, code=label)
        return PermissionDeniedError(text, provider=PROVIDER, call=call, code=label)
    if status == 404:
        return NotFoundError(text, provider=PROVIDER, call=call, code=label)
    if status == 400:
        return BadRequestError(text, provider=PROVIDER, call=call, code=label)
    return ProviderError(text, provider=PROVIDER, call=call, code=label)
