"""Backblaze B2 application keys: a `Provider` client over b2_create_key and friends.

Contract: `B2Provider` implements `providers.base.Provider` (kind "b2");
`capabilities` maps portable permissions and says which capabilities are never issued.
"""

from storage_token.providers.b2.capabilities import (
    BUCKET_KEY_CAPABILITIES,
    FORBIDDEN_CAPABILITIES,
    KNOWN_CAPABILITIES,
    PERMISSION_CAPABILITIES,
    REQUIRED_ACCOUNT_CAPABILITIES,
    capabilities_for,
)
from storage_token.providers.b2.client import B2Provider
from storage_token.providers.b2.request import CreateRequest, create_request

__all__ = [
    "BUCKET_KEY_CAPABILITIES",
    "FORBIDDEN_CAPABILITIES",
    "KNOWN_CAPABILITIES",
    "PERMISSION_CAPABILITIES",
    "REQUIRED_ACCOUNT_CAPABILITIES",
    "B2Provider",
    "CreateRequest",
    "capabilities_for",
    "create_request",
]
