"""What went wrong at a provider, as classes callers can branch on.

    ProviderError
    ├── RetryableError         429 / 5xx / US3 150, 153, 15004-15007, timeouts
    ├── CredentialsError       the account key is wrong, unknown or expired
    ├── PermissionDeniedError  the account key may not do this
    │   └── MissingCapabilitiesError  check: the key lacks capabilities the operator will use
    ├── BadRequestError        the request itself is wrong (or config: bucket, project)
    ├── QuotaExceededError     a limit of the account (e.g. token count)
    └── NotFoundError          the thing asked for does not exist

Messages carry the provider's own message and code, never key material.
"""

from __future__ import annotations

import math

# The longest wait a server may ask for: B2 and UCloud document no bound, and a
# bigger or non-finite value (inf, nan, 1e15) would overflow a timedelta downstream.
MAX_RETRY_AFTER = 3600.0


class ProviderError(Exception):
    """Base of every error a provider client raises."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        call: str = "",
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.call = call
        self.code = code
        self.retry_after = _sane_wait(retry_after)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.call) if p)
        code = f" [{self.code}]" if self.code not in (None, "") else ""
        prefix = f"{where}{code}: " if where or code else ""
        return f"{prefix}{self.message}"


class RetryableError(ProviderError):
    """Transient: try again later (after `retry_after` seconds when given)."""

    kind = "retryable"


class CredentialsError(ProviderError):
    """The account credentials are wrong, unknown or expired."""

    kind = "credentials"


class PermissionDeniedError(ProviderError):
    """The account credentials are valid but may not do this."""

    kind = "permission"


class MissingCapabilitiesError(PermissionDeniedError):
    """`check` found the account key without capabilities the operator needs; `missing` names them."""

    def __init__(self, missing: tuple[str, ...], **kwargs: object) -> None:
        self.missing = missing
        super().__init__(
            f"the account key lacks {', '.join(missing)}, which the operator needs",
            **kwargs,  # type: ignore[arg-type]
        )


class BadRequestError(ProviderError):
    """The request is invalid: a parameter, a missing bucket, a wrong project."""

    kind = "bad-request"


class QuotaExceededError(ProviderError):
    """An account limit was hit (e.g. the number of tokens)."""

    kind = "quota"


class NotFoundError(ProviderError):
    """The key or resource does not exist."""

    kind = "not-found"


def _sane_wait(seconds: float | None) -> float | None:
    """None for a wait that isn't a finite number; otherwise within [0, MAX_RETRY_AFTER]."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
