"""US3 RetCodes and HTTP statuses -> the error classes of `providers.errors`.

A code the table doesn't name is a plain `ProviderError` (not retried,
surfaced as is).
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

__all__ = ["PROVIDER", "RETCODE_ERRORS", "http_error", "parse_retry_after", "retcode_error"]

PROVIDER = "us3"

# Every code of the UCloud gateway table (api summary/public.md) and of the UFile
# table (ufile-api/error_code.md) that a token action can answer.
RETCODE_ERRORS: dict[int, type[ProviderError]] = {
    # -- gateway ------------------------------------------------------------------
    110: RetryableError,  # the API answered nothing within 60 s: the action may have been applied
    130: RetryableError,  # gateway or auth service fault
    150: RetryableError,  # service unavailable
    153: RetryableError,  # rate limited
    160: BadRequestError,  # Action missing: a client bug
    161: BadRequestError,  # Action unknown: a client bug
    170: CredentialsError,  # Signature missing
    171: CredentialsError,  # Signature wrong
    172: CredentialsError,  # user does not exist
    174: CredentialsError,  # account credential does not exist
    292: BadRequestError,  # project does not exist (config)
    293: PermissionDeniedError,  # no permission in this zone
    294: BadRequestError,  # IP rejected (config)
    295: PermissionDeniedError,  # security lock check failed
    299: PermissionDeniedError,  # IAM check failed
    # -- UFile --------------------------------------------------------------------
    15002: BadRequestError,  # required parameter missing
    15004: RetryableError,  # service unavailable, retry later
    15005: RetryableError,  # failed, retry later
    15006: RetryableError,
    15007: RetryableError,
    15010: BadRequestError,  # the bucket asked for does not exist (config)
    15011: QuotaExceededError,  # quota too small
    15012: RetryableError,  # internal error (15012-15022: transient as far as a caller can tell)
    15013: RetryableError,
    15015: RetryableError,
    15016: RetryableError,
    15017: BadRequestError,  # invalid parameter
    15018: BadRequestError,  # parameter out of range
    15019: QuotaExceededError,  # balance too low: billing, not a bad request
    15020: RetryableError,
    15021: RetryableError,
    15022: RetryableError,
    15037: PermissionDeniedError,  # no permission
    15038: QuotaExceededError,  # token count limit: delete old tokens
    15039: BadRequestError,  # bucket does not exist (config)
    15040: NotFoundError,  # token not found
    15041: PermissionDeniedError,  # account without real-name verification
    15047: BadRequestError,  # the region lacks this feature (config)
    15050: QuotaExceededError,  # account in arrears: billing
    15052: BadRequestError,  # bucket still bound to a token
}


def retcode_error(retcode: int, message: str, call: str) -> ProviderError:
    """The error for a non-zero RetCode, keeping the server's message."""
    cls = RETCODE_ERRORS.get(retcode, ProviderError)
    return cls(message or f"RetCode {retcode}", provider=PROVIDER, call=call, code=retcode)


def http_error(status: int, message: str, call: str, retry_after: float | None = None) -> ProviderError:
    """The error for a non-200 HTTP answer (the API itself answers 200 even on errors)."""
    text = message or f"HTTP {status}"
    if status == 429 or status >= 500:
        return RetryableError(text, provider=PROVIDER, call=call, code=status, retry_after=retry_after)
    if status == 401:
        return CredentialsError(text, provider=PROVIDER, call=call, code=status)
    if status == 403:
        return PermissionDeniedError(text, provider=PROVIDER, call=call, code=status)
    if status == 404:
        # The endpoint path is wrong: a configuration problem, not a missing token.
        return BadRequestError(f"{text} (is the endpoint right?)", provider=PROVIDER, call=call, code=status)
    if 400 <= status < 500:
        return BadRequestError(text, provider=PROVIDER, call=call, code=status)
    return ProviderError(text, provider=PROVIDER, call=call, code=status)
