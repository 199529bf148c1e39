"""UCloud US3 (UFile) tokens: a `Provider` client over CreateUFileToken and friends.

Contract: `US3Provider` implements `providers.base.Provider` (kind "us3");
`signing` is the UCloud SHA1 request signature, usable on its own.
"""

from storage_token.providers.us3.client import US3Provider
from storage_token.providers.us3.models import PERMISSION_OPS, UFileToken, s3_endpoint_for

__all__ = ["PERMISSION_OPS", "UFileToken", "US3Provider", "s3_endpoint_for"]
