"""Values several unit test modules share, kept here so no test module imports another.

Each group is the one home of values that used to live in one test module and were imported
from it by others (a test module imported for its constants also re-collects its tests' names).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage_token.api.provider import Ceiling, ProviderSpec
from storage_token.secrets.render import KeyMaterial

# -- policy: a provider whose ceiling leaves every limit wide open ---------------------------------
# So each policy case narrows exactly the one limit it is about.
OPEN_CEILING = Ceiling(
    allowed_buckets=("*",),
    max_duration=timedelta(days=1000),
    min_duration=timedelta(0),
    min_renewal_interval=timedelta(0),
    max_revoke_grace_period=timedelta(days=7),
)
PROVIDER = ProviderSpec(
    kind="StorageProvider",
    name="b2",
    namespace="team-a",
    type="b2",
    endpoint="http://x",
    credentials_secret="creds",
    ceiling=OPEN_CEILING,
)

# -- Secret rendering: key material with every field set, and one with none of the optional ones ---
SECRET = "s3cr3t/K3y+Material=Xq9"
ACCESS_KEY_ID = "AKID0004a1b2c3d4e5f6"

KEY = KeyMaterial(
    provider="b2",
    key_id="kid-0004a1b2c3d4e5f6",
    key_name="st-cluster1-default-web-1",
    access_key_id=ACCESS_KEY_ID,
    secret_access_key=SECRET,
    endpoint="https://s3.us-west-004.backblazeb2.com",
    region="us-west-004",
    buckets=("media", "backups"),
    prefixes=("web/", "logs/"),
    expires_at=datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    native={"B2_APPLICATION_KEY_ID": ACCESS_KEY_ID, "B2_APPLICATION_KEY": SECRET},
)

BARE = KeyMaterial(
    provider="us3",
    key_id="tok-1",
    key_name="st-bare",
    access_key_id=ACCESS_KEY_ID,
    secret_access_key=SECRET,
    endpoint=None,
    region=None,
    buckets=(),
    prefixes=(),
    expires_at=None,
)
