"""Key names: deterministic, traceable, within B2's alphabet ([A-Za-z0-9-], at most 100 characters),
and carrying an install identity no other install can share or be a prefix of.

`sto-<install>-<namespace>-<name>-<uid8>-r<revision>`, where `<install>` is a fixed-length digest
of the cluster id and the install id. Fixed length makes the prefix prefix-free: install `prod`
can never select the keys of `prod-eu-1`, and two installs with the same human-chosen cluster id
but different install ids (two namespaced releases) get different digests. The sweep acts only on
names that `parse_key_name` accepts exactly, so a human's key `sto-default-x` is never touched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX = "sto"
MAX_LENGTH = 100
DIGEST_LENGTH = 10  # hex characters: 40 bits, so an accidental collision between installs is ~1e-12
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_DIGEST = re.compile(rf"^[0-9a-f]{{{DIGEST_LENGTH}}}$")
_TAIL = re.compile(
    r"^(?P<middle>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)-(?P<uid>[0-9a-f]{8})-r(?P<revision>[1-9][0-9]{0,9})$"
)


def install_digest(cluster_id: str, install_id: str) -> str:
    """The identity every key name of one install carries (cluster id and install id both matter)."""
    # Length-prefixed, so no split of the same characters between the two parts gives the same digest.
    encoded = f"storage-token:{len(cluster_id)}:{cluster_id}:{install_id}"
    return hashlib.sha256(encoded.encode()).hexdigest()[:DIGEST_LENGTH]


def key_prefix(digest: str) -> str:
    """Every key this install issues starts with this; provider listings are narrowed to it."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not an install digest: {digest!r}")
    return f"{PREFIX}-{digest}-"


def _clean(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text).strip("-")[:limit].strip("-") or "x"


def uid8(uid: str) -> str:
    """The uid part a token's key names carry (matched against parsed names by the sweep)."""
    short = uid.replace("-", "").lower()[:8]
    if not re.fullmatch(r"[0-9a-f]{8}", short):
        # Kubernetes uids are UUIDs; anything else is hashed so the part still parses.
        short = hashlib.sha256(uid.encode()).hexdigest()[:8]
    return short


def key_name(digest: str, namespace: str, name: str, uid: str, revision: int) -> str:
    """`sto-<install>-<namespace>-<name>-<uid8>-r<revision>`, shortened with a hash when too long.

    The uid part tells tokens of the same name apart across re-creation; the revision makes
    every issuance's name unique, which is what crash recovery looks keys up by.
    """
    head = key_prefix(digest)
    tail = f"-{uid8(uid)}-r{revision}"
    middle = f"{_clean(namespace, 63)}-{_clean(name, 253)}"
    if len(head) + len(middle) + len(tail) > MAX_LENGTH:
        digest8 = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
        room = MAX_LENGTH - len(head) - len(tail) - len(digest8) - 1
        middle = f"{middle[:room].rstrip('-')}-{digest8}"
    return f"{head}{middle}{tail}"


@dataclass(frozen=True)
class ParsedKeyName:
    """What a key name of this install says about its token."""

    uid8: str
    revision: int


def parse_key_name(digest: str, name: str) -> ParsedKeyName | None:
    """The token parts of `name` if this install issued a key of that shape, else None (leave it alone)."""
    head = key_prefix(digest)
    if len(name) > MAX_LENGTH or not name.startswith(head):
        return None
    match = _TAIL.match(name[len(head) :])
    if match is None:
        return None
    return ParsedKeyName(uid8=match["uid"], revision=int(match["revision"]))
