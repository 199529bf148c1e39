"""What went wrong at a provider, as classes callers can branch on.

    ProviderError
    ├── RetryableError         429 / 5xx / US3 150, 153, 15004-15007, timeouts
    ├── CredentialsError       the account key is wrong, unknown or expired
    ├── PermissionDeniedError  the account key may not do this
    ├── BadRequestError        the request itself is wrong (or config: bucket, project)
    ├── QuotaExceededError     a limit of the account (e.g. token count)
    └── NotFoundError          the thing asked for does not exist

Messages carry the provider's own message and code, never key material.
"""

from __future__ import annotations


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
        self.retry_after = retry_after
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


class BadRequestError(ProviderError):
    """The request is invalid: a parameter, a missing bucket, a wrong project."""

    kind = "bad-request"


class QuotaExceededError(ProviderError):
    """An account limit was hit (e.g. the number of tokens)."""

    kind = "quota"


class NotFoundError(ProviderError):
    """The key or resource does not exist."""

    kind = "not-found"
