"""Provider clients: talk to a storage provider's key API, know nothing of Kubernetes.

Contract: every client implements `Provider` (see `base`), raises only
`ProviderError` subclasses (see `errors`), and never puts key material into
an exception message, a log record or a repr.
"""

from storage_token.providers.base import (
    AccountInfo,
    IssuedKey,
    KeyInfo,
    KeySpec,
    Provider,
)
from storage_token.providers.errors import (
    BadRequestError,
    CredentialsError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    QuotaExceededError,
    RetryableError,
)

__all__ = [
    "AccountInfo",
    "BadRequestError",
    "CredentialsError",
    "IssuedKey",
    "KeyInfo",
    "KeySpec",
    "NotFoundError",
    "PermissionDeniedError",
    "Provider",
    "ProviderError",
    "QuotaExceededError",
    "RetryableError",
]
