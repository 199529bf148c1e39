"""Would the API server accept this Secret? Checked before any key exists.

Pure: no Kubernetes client, no I/O. Mirrors the API server's own validation of a Secret's data
keys, labels, annotations and size, so a spec that can never be written is refused with a
readable reason (and a Ready=False condition) instead of failing after a key was issued::

    data = await renderer.rehearse(spec.secret.template, spec.buckets, spec.prefixes)
    problem = secret_problems(data, spec.secret.labels, spec.secret.annotations)

Messages quote names (data keys, label and annotation keys, which the tenant wrote) but never
a data value: it may hold key material.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

__all__ = ["MAX_ANNOTATIONS_BYTES", "MAX_SECRET_BYTES", "OPERATOR_METADATA_BYTES", "secret_problems"]

# The API server's limits.
MAX_SECRET_BYTES: Final = 1024 * 1024  # a Secret's data; counted here as stored (base64) with its metadata
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024  # keys and values of all annotations together
_MAX_DATA_KEY: Final = 253
_MAX_PREFIX: Final = 253
_MAX_NAME: Final = 63
_MAX_LABEL_VALUE: Final = 63
# Room kept for the labels and annotations the operator adds itself (managed-by, token, hashes,
# revision, expiry), so a spec that fits exactly doesn't fail once they are added.
OPERATOR_METADATA_BYTES: Final = 1024
_MAX_SHOWN_PROBLEMS: Final = 3

_DATA_KEY_RE: Final = re.compile(r"[-._a-zA-Z0-9]+")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_RE: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def secret_problems(data: Mapping[str, str], labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
    """ "" if the API server would accept a Secret with this data and metadata, else why not."""
    problems = list(_problems(data, labels, annotations))
    if not problems:
        return ""
    shown = "; ".join(problems[:_MAX_SHOWN_PROBLEMS])
    more = len(problems) - _MAX_SHOWN_PROBLEMS
    return shown + (f"; and {more} more problem{'s' if more > 1 else ''}" if more > 0 else "")


def _problems(data: Mapping[str, str], labels: Mapping[str, str], annotations: Mapping[str, str]) -> Iterator[str]:
    total = OPERATOR_METADATA_BYTES
    for key, value in data.items():
        where = f"Secret key {_show(key)}"
        problem = _data_key_problem(key)
        if problem:
            yield f"{where}: {problem}"
        encoded = _utf8(value)
        if encoded is None:
            yield f"{where}: the value is not valid text (it holds a lone surrogate, which UTF-8 cannot encode)"
            continue
        total += _utf8_len(key) + 4 * ((len(encoded) + 2) // 3)  # stored base64-encoded
    for key, value in labels.items():
        problem = _qualified_name_problem(key) or _label_value_problem(value)
        if problem:
            yield f"Secret label {_show(key)}: {problem}"
        total += _utf8_len(key) + _utf8_len(value)
    annotation_bytes = 0
    for key, value in annotations.items():
        # The API server checks annotation keys in lower case (so upper-case prefixes pass).
        problem = _qualified_name_problem(key.lower()) if isinstance(key, str) else "not a string"
        if not problem and _utf8(value) is None:
            problem = "the value is not valid text (a lone surrogate)"
        if problem:
            yield f"Secret annotation {_show(key)}: {problem}"
        annotation_bytes += _utf8_len(key) + _utf8_len(value)
    if annotation_bytes > MAX_ANNOTATIONS_BYTES:
        yield f"the Secret's annotations take {annotation_bytes} bytes; at most {MAX_ANNOTATIONS_BYTES} are allowed"
    total += annotation_bytes
    if total > MAX_SECRET_BYTES:
        yield (
            f"the Secret would take about {total} bytes (data base64-encoded, with its labels and"
            f" annotations); at most {MAX_SECRET_BYTES} are allowed"
        )


def _show(name: object) -> str:
    if not isinstance(name, str):
        return f"of type {type(name).__name__}"
    shown = name if len(name) <= 80 else name[:80] + "…"
    return ascii(shown) if _utf8(shown) is None else repr(shown)


def _utf8(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _utf8_len(text: object) -> int:
    if not isinstance(text, str):
        return 0
    return len(text.encode("utf-8", "surrogatepass"))


def _data_key_problem(key: object) -> str:
    if not isinstance(key, str):
        return "the name must be a string"
    if _utf8(key) is None or not key:
        return "the name must be 1-253 characters of [-._a-zA-Z0-9]"
    if len(key) > _MAX_DATA_KEY:
        return f"the name is longer than {_MAX_DATA_KEY} characters"
    if not _DATA_KEY_RE.fullmatch(key):
        return "the name may only hold the characters [-._a-zA-Z0-9]"
    if key in (".", "..") or key.startswith(".."):
        return "the name must not be '.' or '..' or start with '..'"
    return ""


def _qualified_name_problem(key: object) -> str:
    """Kubernetes' IsQualifiedName: an optional DNS-subdomain prefix and '/', then a name."""
    if not isinstance(key, str):
        return "the key must be a string"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if "/" in prefix:
            return "the key may hold at most one '/'"
        if not prefix:
            return "the prefix before '/' must not be empty"
        if len(prefix) > _MAX_PREFIX:
            return f"the prefix before '/' is longer than {_MAX_PREFIX} characters"
        if not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
            return "the prefix before '/' must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
    if not name:
        return "the name part of the key must not be empty"
    if len(name) > _MAX_NAME:
        return f"the name part of the key is longer than {_MAX_NAME} characters"
    if not _NAME_RE.fullmatch(name):
        return (
            "the name part of the key must be letters, digits, '-', '_' or '.',"
            " starting and ending with a letter or digit"
        )
    return ""


def _label_value_problem(value: object) -> str:
    if not isinstance(value, str):
        return "the value must be a string"
    if len(value) > _MAX_LABEL_VALUE:
        return f"the value is longer than {_MAX_LABEL_VALUE} characters"
    if not _LABEL_VALUE_RE.fullmatch(value):
        return "the value must be empty, or letters, digits, '-', '_' or '.' starting and ending with a letter or digit"
    return ""
