"""Deterministic, traceable key names within B2's alphabet ([A-Za-z0-9-], at most 100 characters)."""

from __future__ import annotations

import hashlib
import re

PREFIX = "sto"
MAX_LENGTH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def _clean(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text).strip("-")[:limit].strip("-") or "x"


def cluster_prefix(cluster_id: str) -> str:
    """Every key this cluster issues starts with this; the orphan sweep looks only here."""
    return f"{PREFIX}-{_clean(cluster_id, 20)}-"


def key_name(cluster_id: str, namespace: str, name: str, uid: str, revision: int) -> str:
    """`sto-<cluster>-<namespace>-<name>-<uid8>-r<revision>`, shortened with a hash when too long.

    The uid part tells tokens of the same name apart across re-creation; the revision makes
    every issuance's name unique, which is what crash recovery looks keys up by.
    """
    head = cluster_prefix(cluster_id)
    tail = f"-{uid.replace('-', '')[:8]}-r{revision}"
    middle = f"{_clean(namespace, 63)}-{_clean(name, 253)}"
    if len(head) + len(middle) + len(tail) > MAX_LENGTH:
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
        room = MAX_LENGTH - len(head) - len(tail) - len(digest) - 1
        middle = f"{middle[:room].rstrip('-')}-{digest}"
    return f"{head}{middle}{tail}"
