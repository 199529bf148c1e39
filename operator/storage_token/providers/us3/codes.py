"""US3 RetCodes and HTTP statuses -> the error classes of `providers.errors`.

The table follows us3-api.md ("RetCodes that matter"); a code it doesn't
name is a plain `ProviderError` (not retried, surfaced as is).
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

PROVIDER = "us3"

RETCODE_ERRORS: dict[int, type[ProviderError]] = {
    150: RetryableError,  # service unavailable
    153: RetryableError,  # rate limited
    160: BadRequestError,  # Action missing: a client bug
    161: BadRequestError,  # Action unknown: a client bug
    170: CredentialsError,  # Signature missing
    171: CredentialsError,  # Signature wrong
    172: CredentialsError,  # user does not exist
    174: CredentialsError,  # account credential does not exist
    292: BadRequestError,  # project does not exist (config)
    294: BadRequestError,  # IP rejected (config)
    299: PermissionDeniedError,  # IAM check failed
    15002: BadRequestError,  # required parameter missing
    15004: RetryableError,  # service unavailable, retry later
    15005: RetryableError,
    15006: RetryableError,
    15007: RetryableError,
    15017: BadRequestError,  # invalid parameter
    15018: BadRequestError,  # parameter out of range
    15037: PermissionDeniedError,  # no permission
    15038: QuotaExceededError,  # token count limit: delete old tokens
    15039: BadRequestError,  # bucket does not exist (config)
    15040: NotFoundError,  # token not found
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


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (the policy's backoff applies)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
