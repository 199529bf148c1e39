"""Turn a freshly issued key and a token's secret template into the Secret's `data`.

Pure: no Kubernetes, no I/O. Values are plain strings; the caller base64-encodes them.

Layout: a preset (``default``, ``aws``, ``rclone``, ``s3cmd``, ``cosi``) gives a fixed set of keys;
free templates (``template.data``: Secret key -> Jinja source) extend or override it.
Free templates run in a locked-down Jinja sandbox:

- no loader, no globals, no extensions: ``include``/``import``/``extends``, ``range``,
  ``lipsum``, ``cycler``, ``self`` … are refused or undefined;
- only a short list of filters and ``str`` methods can be called;
- every operation (call, attribute, loop step, arithmetic, filter) draws on a budget,
  every value and the output are size-capped, so a hostile template fails fast.

Every failure is a :class:`TemplateError` that names the Secret key and the kind of
problem, never the key material or the rendered output::

    data = render_secret_data(KeyMaterial.from_issued("b2", issued), spec.secret.template)
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
from collections.abc import Callable, Generator, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import BuiltinMethodType, MappingProxyType, MethodType, TracebackType
from typing import Any, Final, cast
from urllib.parse import urlsplit

from jinja2 import (
    StrictUndefined,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2.environment import Environment, Template
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS as JINJA_FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer

from storage_token.api.token import SecretTemplate
from storage_token.providers.base import IssuedKey

__all__ = [
    "COSI_KEYS",
    "MAX_OUTPUT_BYTES",
    "MAX_SECRET_BYTES",
    "PRESETS",
    "PREVIOUS_KEY_NAMES",
    "TEMPLATE_VARIABLES",
    "KeyMaterial",
    "TemplateError",
    "limit_error",
    "previous_key_names",
    "render_secret_data",
    "validate_template",
]

PRESETS: tuple[str, ...] = ("default", "aws", "rclone", "s3cmd", "cosi")
# What a free template can read; anything else is an undefined variable.
TEMPLATE_VARIABLES: tuple[str, ...] = (
    "accessKeyId",
    "secretAccessKey",
    "endpoint",
    "region",
    "bucket",
    "buckets",
    "prefix",
    "prefixes",
    "expiresAt",
    "keyId",
    "keyName",
    "provider",
)

# Limits. A Secret is capped at 1 MiB by the API server and base64 adds a third,
# so the whole data stays well under that; one key is far below it.
MAX_OUTPUT_BYTES: Final = 64 * 1024  # one rendered Secret value, UTF-8
MAX_SECRET_BYTES: Final = 512 * 1024  # all values together, UTF-8
MAX_SOURCE_CHARS: Final = 16 * 1024  # one template's source
MAX_CHARS: Final = 64 * 1024  # any string a template computes
MAX_ITEMS: Final = 4096  # any list, tuple or dict a template computes
MAX_PRODUCED_CHARS: Final = 1024 * 1024  # text emitted while rendering one Secret, captured blocks included
# Rendering cost per Secret (all its template keys together), so no render runs for more than a fraction of a second:
MAX_OPERATIONS: Final = 50_000  # per Secret: calls, lookups, loop steps, arithmetic, filters, output pieces
MAX_WORK: Final = 10_000_000  # characters those operations touch (an item counts 16)
MAX_INT_BITS: Final = 4096  # integers computed by a template
MAX_INDENT: Final = 64  # `indent`/`tojson` widths: a width multiplies the output
# Any value a template computes or touches, measured deep (nested containers counted in full,
# shared references as often as they appear): characters of its text plus 16 per item.
MAX_VALUE_WEIGHT: Final = 2 * 1024 * 1024
MAX_DEPTH: Final = 32  # containers nested in containers

# Kubernetes' rule for Secret and ConfigMap keys (IsConfigMapKey).
_SECRET_KEY_RE: Final = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_SECRET_KEY_LEN: Final = 253
_TEMPLATE_FILENAME: Final = "<secret template>"
# Values shorter than this are not scrubbed from messages: they would mangle ordinary words
# and real keys are much longer.
_MIN_SCRUB_LEN: Final = 6


class TemplateError(Exception):
    """A Secret's data could not be produced from its template.

    `reason` is a short CamelCase kind (for a condition reason); `secret_key` the
    Secret key whose template failed, when one did. The message never holds key
    material or rendered output.
    """

    INVALID_KEY: Final = "InvalidSecretKey"
    UNKNOWN_PRESET: Final = "UnknownPreset"
    SYNTAX: Final = "TemplateSyntaxError"
    UNDEFINED: Final = "UndefinedVariable"
    REFUSED: Final = "SandboxRefused"
    LIMIT: Final = "LimitExceeded"
    EVALUATION: Final = "EvaluationFailed"
    UNSAFE_VALUE: Final = "UnsafeValue"
    PRESET_MISMATCH: Final = "PresetNotApplicable"  # the key cannot be written in the preset's shape

    def __init__(self, message: str, *, reason: str, secret_key: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.secret_key = secret_key


@dataclass(frozen=True)
class KeyMaterial:
    """Everything a Secret can be rendered from. The secret stays out of repr."""

    provider: str  # "us3" | "b2"
    key_id: str
    key_name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    endpoint: str | None  # S3-compatible endpoint URL
    region: str | None
    buckets: tuple[str, ...]
    prefixes: tuple[str, ...]
    expires_at: datetime | None  # tz-aware
    # The provider's own variable names (B2_APPLICATION_KEY_ID, …); may hold the secret.
    native: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_issued(cls, provider: str, key: IssuedKey) -> KeyMaterial:
        return cls(
            provider=provider,
            key_id=key.key_id,
            key_name=key.key_name,
            access_key_id=key.access_key_id,
            secret_access_key=key.secret_access_key,
            endpoint=key.endpoint,
            region=key.region,
            buckets=tuple(key.buckets),
            prefixes=tuple(key.prefixes),
            expires_at=key.not_after,
            native=MappingProxyType(dict(key.native)),
        )


# --- public entry points -----------------------------------------------------------------


def validate_template(template: SecretTemplate) -> None:
    """Check a template before any key exists: preset, Secret key names, template syntax."""
    _check_preset(template.preset)
    for name, source in template.data.items():
        _check_secret_key(name)
        problem = _compiled(source)
        if isinstance(problem, _Problem):
            raise TemplateError(_where(name) + problem.detail, reason=problem.reason, secret_key=name)


def render_secret_data(
    key: KeyMaterial, template: SecretTemplate, *, before_each: Callable[[str], None] | None = None
) -> dict[str, str]:
    """The Secret's data for `key`: the preset's keys (if included), then the template's.

    `before_each` is told each template data key before it renders (the render worker reports
    it, so a render killed at a limit can still be blamed on its key).
    """
    _check_preset(template.preset)
    data: dict[str, str] = {}
    if template.include_preset:
        data.update(_PRESET_BUILDERS[template.preset](key))
    if template.data:
        variables = _template_variables(key)
        sensitive = _sensitive_values(key)
        # One budget for the whole Secret, not one per key: 64 keys each just under a per-key
        # budget would otherwise cost 64 times as much.
        budget = _RenderState(static_names=frozenset())
        for name, source in template.data.items():
            _check_secret_key(name)
            if before_each is not None:
                before_each(name)
            value, problem = _render_one(source, variables, budget)
            if problem is not None:
                # Raised here, outside any except block, so no exception holding rendered
                # text or the template context is chained onto it.
                message = _scrub(_where(name) + problem.detail, sensitive)
                raise TemplateError(message, reason=problem.reason, secret_key=name)
            data[name] = value
    total = 0
    for name, value in data.items():
        _check_secret_key(name)  # preset and native names too: a provider could send anything
        total += _utf8_len(value)
        if total > MAX_SECRET_BYTES:
            raise TemplateError(
                _where(name) + f"the Secret's data would exceed {MAX_SECRET_BYTES} bytes",
                reason=TemplateError.LIMIT,
                secret_key=name,
            )
    return data


# --- presets -----------------------------------------------------------------------------


def _expires_at(key: KeyMaterial) -> str:
    if key.expires_at is None:
        return ""
    moment = key.expires_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # providers hand out UTC; don't let local time creep in
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _preset_default(key: KeyMaterial) -> dict[str, str]:
    data = {
        "accessKeyId": key.access_key_id,
        "secretAccessKey": key.secret_access_key,
        "endpoint": key.endpoint or "",
        "region": key.region or "",
        "bucket": key.buckets[0] if key.buckets else "",
        "prefix": key.prefixes[0] if key.prefixes else "",
        "expiresAt": _expires_at(key),
    }
    for name, value in key.native.items():
        data.setdefault(name, value)  # the documented layout wins over a colliding native name
    return data


def _preset_aws(key: KeyMaterial) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        "AWS_ENDPOINT_URL": key.endpoint or "",
        "AWS_REGION": key.region or "",
        "AWS_DEFAULT_REGION": key.region or "",  # older SDKs and the v1 CLI read only this one
        "expiresAt": _expires_at(key),
    }


def _ini(secret_key: str, section: str, values: Mapping[str, str]) -> str:
    """An INI file; refuses values that would break out of their line or lose whitespace."""
    lines = [f"[{section}]"]
    for option, value in values.items():
        if "\n" in value or "\r" in value or value != value.strip():
            # Every reader (rclone, s3cmd, configparser) ends a value at the line break and
            # strips it: such a value would be corrupted or inject options.
            raise TemplateError(
                _where(secret_key) + f"the {option} value has a line break or surrounding whitespace"
                " and cannot be written to this file safely",
                reason=TemplateError.UNSAFE_VALUE,
                secret_key=secret_key,
            )
        lines.append(f"{option} = {value}" if value else f"{option} =")
    return "\n".join(lines) + "\n"


def _preset_rclone(key: KeyMaterial) -> dict[str, str]:
    conf = _ini(
        "rclone.conf",
        "storage",
        {
            "type": "s3",
            "provider": "Other",
            "access_key_id": key.access_key_id,
            "secret_access_key": key.secret_access_key,
            "endpoint": key.endpoint or "",
            "region": key.region or "",
            # A scoped key may not create (or even list) buckets; skip rclone's check-and-create.
            "no_check_bucket": "true",
        },
    )
    return {"rclone.conf": conf, "expiresAt": _expires_at(key)}


def _endpoint_host(endpoint: str | None) -> tuple[str, bool]:
    """`host[:port]` and whether to use HTTPS; a bare host name means HTTPS."""
    if not endpoint:
        return "", True
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    return parts.netloc.rpartition("@")[2], parts.scheme.lower() != "http"


def _preset_s3cmd(key: KeyMaterial) -> dict[str, str]:
    host, https = _endpoint_host(key.endpoint)
    values = {
        "access_key": key.access_key_id,
        "secret_key": key.secret_access_key,
        "host_base": host,
        # No %(bucket)s: path-style requests work with every S3-compatible endpoint.
        "host_bucket": host,
        "use_https": "True" if https else "False",
    }
    if key.region:
        # s3cmd signs with this region; its own default ("US") is better than an empty one.
        values["bucket_location"] = key.region
    return {".s3cfg": _ini(".s3cfg", "default", values), "expiresAt": _expires_at(key)}


# COSI v1alpha2, S3 protocol: the keys a BucketAccess Secret holds, in the order COSI lists them.
COSI_KEYS: Final = (
    "COSI_PROTOCOL",
    "BUCKET_NAME",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
COSI_ADDRESSING_STYLE: Final = "path"  # like the s3cmd preset: path-style works with every S3-compatible endpoint
# COSI requires a region. An S3 endpoint whose name carries none (a custom s3Endpoint in front of
# B2) gets the one every S3-compatible server takes as its default.
COSI_FALLBACK_REGION: Final = "us-east-1"


def _cosi_problem(what: str) -> TemplateError:
    return TemplateError(f"preset 'cosi': {what}", reason=TemplateError.PRESET_MISMATCH)


def _preset_cosi(key: KeyMaterial) -> dict[str, str]:
    """One COSI BucketAccess Secret: exactly one bucket and an endpoint, or no Secret at all.

    COSI writes one Secret per bucket and every S3 key of it is required and non-empty, so a key for
    several buckets, or for the whole account, has no COSI shape: that fails (closed) rather than
    pick a bucket. The rehearsal renders this with the spec's buckets, so it fails before any key exists.
    """
    if len(key.buckets) != 1:
        count = "no bucket (a key for the whole account)" if not key.buckets else f"{len(key.buckets)} buckets"
        raise _cosi_problem(
            f"a COSI Secret names exactly one bucket (BUCKET_NAME) and this token has {count}; "
            "list one bucket in spec.buckets (one StorageToken per bucket), or choose another preset"
        )
    if not key.endpoint:
        raise _cosi_problem("the provider reports no S3 endpoint for AWS_ENDPOINT_URL; set the provider's s3Endpoint")
    data = {
        "COSI_PROTOCOL": "S3",
        "BUCKET_NAME": key.buckets[0],
        "AWS_ENDPOINT_URL": key.endpoint,
        "AWS_DEFAULT_REGION": key.region or COSI_FALLBACK_REGION,
        "AWS_S3_ADDRESSING_STYLE": COSI_ADDRESSING_STYLE,
        "AWS_ACCESS_KEY_ID": key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
    }
    assert tuple(data) == COSI_KEYS
    return data


# `secret.keepPrevious`: the Secret keys that hold the key pair, per preset, and the names the replaced
# pair is kept under until it is revoked (file presets keep the whole previous file).
PREVIOUS_KEY_NAMES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "default": {"accessKeyId": "previousAccessKeyId", "secretAccessKey": "previousSecretAccessKey"},
        "aws": {
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID_PREVIOUS",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY_PREVIOUS",
        },
        "cosi": {
            "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID_PREVIOUS",
            "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY_PREVIOUS",
        },
        "rclone": {"rclone.conf": "rclone-previous.conf"},
        "s3cmd": {".s3cfg": ".s3cfg-previous"},
    }
)


def previous_key_names(preset: str) -> Mapping[str, str]:
    """Secret key of the current pair -> Secret key the previous pair is kept under ({} if none)."""
    return PREVIOUS_KEY_NAMES.get(preset, {})


_PRESET_BUILDERS: Final[Mapping[str, Callable[[KeyMaterial], dict[str, str]]]] = {
    "default": _preset_default,
    "aws": _preset_aws,
    "rclone": _preset_rclone,
    "s3cmd": _preset_s3cmd,
    "cosi": _preset_cosi,
}
assert tuple(_PRESET_BUILDERS) == PRESETS


# --- checks and messages -----------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    reason: str
    detail: str


def limit_error(secret_key: str | None, detail: str) -> TemplateError:
    """A LimitExceeded error for `secret_key` (or the whole Secret), worded like every other."""
    prefix = _where(secret_key) if secret_key is not None else "Secret template: "
    return TemplateError(prefix + detail, reason=TemplateError.LIMIT, secret_key=secret_key)


def _where(secret_key: str) -> str:
    shown = secret_key if len(secret_key) <= 80 else secret_key[:80] + "…"
    return f"Secret key {shown!r}: "


def _check_preset(preset: str) -> None:
    if preset not in _PRESET_BUILDERS:
        raise TemplateError(
            f"preset {preset[:80]!r}: unknown preset; known: {', '.join(PRESETS)}",
            reason=TemplateError.UNKNOWN_PRESET,
        )


def _check_secret_key(name: object) -> None:
    if (
        not isinstance(name, str)
        or len(name) > _MAX_SECRET_KEY_LEN
        or name in (".", "..")
        or not _SECRET_KEY_RE.fullmatch(name)
    ):
        shown = name if isinstance(name, str) else type(name).__name__
        raise TemplateError(
            _where(shown) + "invalid Secret key name: must be 1-253 characters of [-._a-zA-Z0-9], not '.' or '..'",
            reason=TemplateError.INVALID_KEY,
            secret_key=shown,
        )


def _sensitive_values(key: KeyMaterial) -> tuple[str, ...]:
    values = {key.secret_access_key, key.access_key_id, *key.native.values()}
    return tuple(sorted((v for v in values if len(v) >= _MIN_SCRUB_LEN), key=len, reverse=True))


_SCRUB_WINDOW: Final = 8


def _scrub(message: str, sensitive: Iterable[str]) -> str:
    """Last line of defence: messages are built not to carry values, but never let one through.

    Whole values first, then any 8-character piece of one (or of it reversed).
    """
    values = tuple(sensitive)
    for value in values:
        message = message.replace(value, "[redacted]")
    for value in values:
        for text in (value, value[::-1]):
            for start in range(len(text) - _SCRUB_WINDOW + 1):
                piece = text[start : start + _SCRUB_WINDOW]
                if piece in message:
                    message = message.replace(piece, "[redacted]")
    return message


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate must not crash the size check


def _kind(value: object) -> str:
    return f"a {type(value).__name__} value"


# --- the sandbox -------------------------------------------------------------------------


class _Refused(SecurityError):
    """The sandbox refused an operation. Messages are ours and carry no values."""


class _OverLimit(SecurityError):
    """A size or cost limit was hit. Messages are ours and carry no values."""


_CONTAINERS: Final = (list, tuple, dict, set, frozenset, KeysView, ValuesView, ItemsView)
_ITEM_WEIGHT: Final = 16  # an item costs more than a character (a Python object behind a pointer)
_OPAQUE_TEXT: Final = 200  # str() of a macro, loop, generator …: a fixed-size repr


@dataclass(frozen=True)
class _Size:
    """Upper bounds for one value, nested containers counted in full."""

    text: int  # characters of str(value) (strings nested in containers as their repr)
    items: int  # container items, nested ones included
    depth: int  # containers nested in containers

    @property
    def weight(self) -> int:
        return self.text + _ITEM_WEIGHT * self.items


class _TooBig(Exception):
    """Internal: the measured value went past the cap; its exact size does not matter."""


def _nested_str_text(text: str) -> int:
    """Characters of repr(text) at most, without building it: an escape is up to 10 characters."""
    if text.isascii() and text.isprintable():
        return 2 * len(text) + 2  # a quote or backslash doubles
    return 10 * len(text) + 2


def _scalar_text(value: object, nested: bool) -> int:
    if isinstance(value, str):
        return _nested_str_text(value) if nested else len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2  # decimal digits and a sign
    if isinstance(value, float):
        return 24
    return _OPAQUE_TEXT


# Sizes of the bigger containers already measured in this render, so touching the same list
# again costs a lookup. The object is kept with its size so its id can't be reused; the cache
# is capped so it can't keep much garbage alive.
_SIZE_CACHE_MIN_ITEMS: Final = 64
_SIZE_CACHE_ENTRIES: Final = 512
_SizeCache = dict[int, tuple[object, tuple[int, int, int]]]


def _measure(value: object, cap: int = MAX_VALUE_WEIGHT) -> _Size:
    """Deep size of `value`; past `cap` (or MAX_DEPTH) a size just over the cap.

    Memoised per container, so a list holding the same huge list 4096 times costs 4096 steps,
    not its expanded size; and the walk stops as soon as the cap is passed, so it never costs
    more than `cap` steps either.
    """
    if not isinstance(value, _CONTAINERS):
        return _Size(_scalar_text(value, nested=False), 0, 0)
    state = _STATE.get()
    shared: _SizeCache = state.sizes if state is not None else {}
    # id -> (the object, kept alive so its id is not reused, its (text, items, depth) or None while open)
    memo: dict[int, tuple[object, tuple[int, int, int] | None]] = {}

    def walk(node: object, depth: int) -> tuple[int, int, int]:
        key = id(node)
        seen = memo.get(key) or shared.get(key)
        if seen is not None:
            size = seen[1]
            if size is None or depth + size[2] > MAX_DEPTH:  # a cycle, or too deep here
                raise _TooBig
            return size
        if depth >= MAX_DEPTH:
            raise _TooBig
        memo[key] = (node, None)
        text, items, deepest = 16, 0, 0  # brackets, or a view's `dict_items(…)`
        children: Iterable[object]
        if isinstance(node, dict):
            children = itertools.chain.from_iterable(node.items())
        else:
            children = cast("Iterable[object]", node)
        for child in children:
            kind = type(child)
            # Scalars inline: this loop runs once per item of every container a template touches.
            if kind is str:
                text += _nested_str_text(child) + 4  # type: ignore[arg-type]
            elif kind is int:
                text += child.bit_length() * 3 // 10 + 6  # type: ignore[attr-defined]
            elif isinstance(child, _CONTAINERS):
                sub_text, sub_items, sub_depth = walk(child, depth + 1)
                text += sub_text + 4
                items += sub_items
                deepest = max(deepest, sub_depth)
            else:
                text += _scalar_text(child, nested=True) + 4
            items += 1
            if (items & 255) == 0 and text + _ITEM_WEIGHT * items > cap:
                raise _TooBig
        if text + _ITEM_WEIGHT * items > cap:
            raise _TooBig
        result = (text, items, deepest + 1)
        memo[key] = (node, result)
        if items >= _SIZE_CACHE_MIN_ITEMS and state is not None and len(shared) < _SIZE_CACHE_ENTRIES:
            shared[key] = (node, result)
        return result

    try:
        found = walk(value, 0)
    except (_TooBig, RecursionError):  # RecursionError can't happen below MAX_DEPTH; never let it crash
        return _Size(cap + 1, 0, MAX_DEPTH + 1)
    return _Size(*found)


def _weight(value: object) -> int:
    """Cost of touching `value`: characters, and items at 16 each, nested containers in full."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, _CONTAINERS):
        return _measure(value, MAX_WORK).weight
    return 1


def _text_bound(value: object, cap: int) -> int:
    """Characters str(value) would have, known before str() runs (at most `cap` + 1)."""
    if isinstance(value, str):
        return len(value)
    return min(_measure(value, cap).text, cap + 1)


@dataclass
class _RenderState:
    """The budget of one Secret's render (all its template keys), and the names the template
    being rendered spelled out (safe to quote back)."""

    static_names: frozenset[str]
    sizes: _SizeCache = field(default_factory=dict)
    operations: int = 0
    work: int = 0
    produced: int = 0

    def spend(self, work: int) -> None:
        self.operations += 1
        self.work += work
        if self.operations > MAX_OPERATIONS:
            raise _OverLimit(f"rendering cost limit exceeded ({MAX_OPERATIONS} operations for the whole Secret)")
        if self.work > MAX_WORK:
            raise _OverLimit(f"rendering cost limit exceeded ({MAX_WORK} units of work for the whole Secret)")

    def produce(self, chars: int) -> None:
        self.produced += chars
        if self.produced > MAX_PRODUCED_CHARS:
            raise _OverLimit(f"rendering produced more than {MAX_PRODUCED_CHARS} characters for the whole Secret")


# A context variable rather than an argument: the sandbox hooks and filters are called by
# Jinja's generated code, which has no room for it. Unset while compiling (constant folding
# only sees the template's own literals, and the size checks still apply).
_STATE: ContextVar[_RenderState | None] = ContextVar("secret_render_state", default=None)


def _spend(*values: object, work: int = 0) -> None:
    """Count one operation that touches `values` (plus `work` more units)."""
    state = _STATE.get()
    if state is not None:
        state.spend(work + sum(map(_weight, values)))


def _quotable(name: object) -> str | None:
    """`name` if the template spelled it out, else None (it may have been computed from a secret)."""
    state = _STATE.get()
    if isinstance(name, str) and state is not None and name in state.static_names:
        return name
    return None


def _limit_of(value: object) -> int | None:
    if isinstance(value, str):
        return MAX_CHARS
    if isinstance(value, list | tuple | dict | set | frozenset):
        return MAX_ITEMS
    return None


def _over_limit() -> _OverLimit:
    return _OverLimit(f"a value would exceed {MAX_CHARS} characters or {MAX_ITEMS} items")


def _deep_over_limit() -> _OverLimit:
    return _OverLimit(
        f"a value would exceed {MAX_VALUE_WEIGHT} units of size (nested lists counted in full)"
        f" or {MAX_DEPTH} levels of nesting"
    )


def _check_size(value: object) -> None:
    limit = _limit_of(value)
    if limit is not None and len(value) > limit:  # type: ignore[arg-type]
        raise _over_limit()
    if isinstance(value, _CONTAINERS):
        size = _measure(value)
        if size.weight > MAX_VALUE_WEIGHT or size.depth > MAX_DEPTH:
            raise _deep_over_limit()
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _OverLimit(f"an integer would exceed {MAX_INT_BITS} bits")


def _check_text(bound: int, limit: int = MAX_CHARS) -> None:
    if bound > limit:
        raise _over_limit()


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, anything that could allocate or spin without bound."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            limit = _limit_of(seq)
            if limit is None or not isinstance(count, int) or isinstance(count, bool):
                continue
            if len(seq) * max(count, 0) > limit:
                raise _over_limit()
            if not isinstance(seq, str) and _measure(seq).weight * max(count, 0) > MAX_VALUE_WEIGHT:
                raise _deep_over_limit()
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _OverLimit(f"an integer would exceed {MAX_INT_BITS} bits")
    elif operator == "+":
        limit = _limit_of(left)
        if limit is not None and _limit_of(right) == limit:
            if len(left) + len(right) > limit:
                raise _over_limit()
            if not isinstance(left, str) and _measure(left).weight + _measure(right).weight > MAX_VALUE_WEIGHT:
                raise _deep_over_limit()
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() * max(right, 0) > MAX_INT_BITS:
            raise _OverLimit(f"an integer would exceed {MAX_INT_BITS} bits")
    elif operator == "%" and isinstance(left, str):
        # printf-style widths ("%999999999s") allocate without bound; `~` and filters do the job.
        raise _Refused("string %-formatting is not allowed")


def _check_replace(text: str, old: object, new: object) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        return  # str.replace raises TypeError itself
    hits = text.count(old) if old else len(text) + 1
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_CHARS:
        raise _over_limit()


# Methods a template may call. None returns much more than its input.
_STR_METHODS: Final = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "isalnum", "isalpha", "isdigit",
        "islower", "isspace", "isupper", "lower", "lstrip", "partition", "removeprefix",
        "removesuffix", "replace", "rfind", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    }
)  # fmt: skip
_DICT_METHODS: Final = frozenset({"get", "items", "keys", "values"})
_LOOP_METHODS: Final = frozenset({"changed", "cycle"})


def _callable_ok(obj: Any, owner: object, name: object, args: tuple[Any, ...]) -> bool:
    if isinstance(obj, Macro):  # the template's own macros, and `caller`
        return True
    if isinstance(obj, BuiltinMethodType) and isinstance(owner, str) and name in _STR_METHODS:
        if name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        return True
    if isinstance(obj, BuiltinMethodType) and isinstance(owner, dict) and name in _DICT_METHODS:
        return True
    return isinstance(obj, MethodType) and isinstance(owner, LoopContext) and name in _LOOP_METHODS


class _SecretUndefined(StrictUndefined):
    """StrictUndefined whose messages quote only names written in the template."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint  # fixed text from Jinja, or ours
        name = self._undefined_name
        if self._undefined_obj is missing:
            return f"undefined variable {name!r}"  # a plain variable name always comes from the source
        quoted = _quotable(name)
        what = f" {quoted!r}" if quoted is not None else ""
        return f"{_kind(self._undefined_obj)} has no attribute or element{what}"


class _SecretSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with a budget, size caps, and a short list of callables."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend(left, right)
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        _check_size(result)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _spend()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend()
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        if isinstance(obj, Undefined):
            return obj  # `cycler.__init__`: the real problem is that `cycler` is undefined
        quoted = _quotable(attribute)
        what = f"attribute {quoted!r}" if quoted is not None else "an attribute"
        return self.undefined(f"access to {what} of {_kind(obj)} is not allowed", name=attribute, obj=obj, exc=_Refused)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(obj, "__self__", None)
        _spend(owner, *args, *kwargs.values())
        if isinstance(obj, Undefined):
            return obj()  # raises the undefined variable's own error
        name = getattr(obj, "__name__", None)
        if not _callable_ok(obj, owner, name, args):
            what = f"{name!r}" if _quotable(name) is not None else _kind(obj)
            raise _Refused(f"calling {what} is not allowed")
        result = super().call(context, obj, *args, **kwargs)
        _spend(result)
        _check_size(result)
        return result


# --- filters -----------------------------------------------------------------------------


def _metered(func: Callable[..., Any], *, stringifies: bool = False, sorts: bool = False) -> Callable[..., Any]:
    """Charge a filter or test to the budget and cap its result. Keeps Jinja's pass_* marker.

    `stringifies`: the filter turns its input into text first, so that text's size is
    checked before it is built. `sorts`: it compares its items about log2(n) times each.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _spend(*args, *kwargs.values())
        subject = next((arg for arg in args if not isinstance(arg, EvalContext | Context | Environment)), None)
        if stringifies:
            _check_text(_text_bound(subject, MAX_CHARS))
        if sorts and isinstance(subject, _CONTAINERS):
            _spend(work=_weight(subject) * max(len(subject).bit_length(), 1))
        result = func(*args, **kwargs)
        _spend(result)
        _check_size(result)
        return result

    return wrapper


def _bounded(items: Iterable[Any]) -> Iterator[Any]:
    for count, item in enumerate(items, 1):
        if count > MAX_ITEMS:
            raise _over_limit()
        yield item


def _filter_replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    _check_replace(text, old, new)
    return text.replace(old, new, -1 if count is None else count)


def _filter_join(value: Iterable[Any], separator: Any = "") -> str:
    _check_text(_text_bound(separator, MAX_CHARS))
    sep = str(separator)
    parts: list[str] = []
    total = 0
    for item in _bounded(value):
        # Each part's size is known before str() builds it (an item may be a huge nested list).
        total += _text_bound(item, MAX_CHARS) + (len(sep) if parts else 0)
        _check_text(total)
        parts.append(str(item))
    return sep.join(parts)


def _check_width(width: Any) -> None:
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if size > MAX_INDENT:
        raise _OverLimit(f"indentation is limited to {MAX_INDENT}")


def _filter_indent(value: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    _check_width(width)
    text = str(value)  # its size was checked (`stringifies`)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_text(len(text) + (text.count("\n") + 1) * max(pad, 0))
    return JINJA_FILTERS["indent"](text, width, first, blank)


@pass_eval_context
def _filter_tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Any:
    _check_width(indent)
    size = _measure(value)
    pad = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    # JSON escapes a character as up to 12 (an astral one as two \\u escapes), and puts each
    # item on its own line, indented by its depth. Below that bound nothing can go wrong;
    # above it, count the real output piece by piece before building it.
    if 12 * size.text + size.items * (2 + max(pad, 0) * (size.depth + 1)) > MAX_CHARS:
        _spend(work=_JSON_ITEM_WORK * size.items)  # the count below runs in Python, per item
        _check_json_size(value, indent)
    return JINJA_FILTERS["tojson"](eval_ctx, value, indent)


_JSON_ITEM_WORK: Final = 48
_HTML_UNSAFE: Final = ("<", ">", "&", "'")  # Jinja's tojson writes each as a 6-character escape


def _check_json_size(value: Any, indent: Any) -> None:
    encoder = json.JSONEncoder(sort_keys=True, indent=indent)  # what tojson uses (its json policy)
    total = 0
    try:
        for chunk in encoder.iterencode(value):
            total += len(chunk) + 5 * sum(map(chunk.count, _HTML_UNSAFE))
            if total > MAX_CHARS:
                raise _over_limit()
    except (TypeError, ValueError):
        return  # not JSON-serialisable: tojson itself reports it


def _filter_b64encode(value: Any) -> str:
    text = str(value)  # its size was checked (`stringifies`)
    _check_text(4 * _utf8_len(text) // 3 + 4)
    return base64.b64encode(text.encode()).decode()


# Jinja's own filters that can't amplify their input, reach outside the sandbox, or vary
# between renders (no `random`: the Secret would change on every reconcile).
_JINJA_FILTERS_ALLOWED: Final = (
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "last", "length",
    "list", "lower", "map", "max", "min", "reject", "reverse", "round", "select", "sort",
    "string", "title", "trim", "truncate", "unique", "upper", "urlencode",
)  # fmt: skip
# Those that turn their input into text first.
_STRINGIFYING_FILTERS: Final = frozenset(
    {
        "capitalize",
        "lower",
        "string",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "replace",
        "indent",
        "b64encode",
    }
)
_SORTING_FILTERS: Final = frozenset({"sort", "unique", "max", "min"})

# Filters the tree rewrite (`_Meter`) inserts. pass_context keeps Jinja from running them
# at compile time, where no budget is in place. Users can name them too: they only meter.
_LOOP_FILTER: Final = "_st_loop"
_EMIT_FILTER: Final = "_st_emit"
_CONCAT_FILTER: Final = "_st_concat"
_WEIGH_FILTER: Final = "_st_weigh"
_SLICE_FILTER: Final = "_st_slice"


@pass_context
def _meter_loop(context: Context, iterable: Any) -> Iterator[Any]:
    """Every `for` loop's sequence: each step costs an operation."""
    for item in iterable:
        _spend()
        yield item


@pass_context
def _meter_emit(context: Context, value: Any) -> str:
    """Every piece of output, captured blocks and macro bodies included; sized before str()."""
    state = _STATE.get()
    if not isinstance(value, str):
        room = MAX_PRODUCED_CHARS - (state.produced if state is not None else 0)
        if _text_bound(value, room) > room:
            raise _OverLimit(f"rendering produced more than {MAX_PRODUCED_CHARS} characters")
    text = str(value)
    _spend(text)
    if state is not None:
        state.produce(len(text))
    return text


@pass_context
def _meter_concat(context: Context, parts: tuple[Any, ...]) -> str:
    """`a ~ b`, capped before str() and the join allocate."""
    _check_text(sum(_text_bound(part, MAX_CHARS) for part in parts))
    texts = [str(part) for part in parts]
    _spend(*texts)
    return "".join(texts)


@pass_context
def _meter_weigh(context: Context, value: Any) -> Any:
    """Operands of comparisons (`==`, `in`, …), which cost their size."""
    _spend(value)
    return value


@pass_context
def _meter_slice(context: Context, value: Any, start: Any, stop: Any, step: Any) -> Any:
    """`x[a:b:c]`, which Jinja's generated code would otherwise run without the sandbox's getitem."""
    _spend(value)
    return value[start:stop:step]


def _build_environment() -> _SecretSandbox:
    env = _SecretSandbox(
        autoescape=False,
        undefined=_SecretUndefined,
        extensions=(),
        loader=None,
        keep_trailing_newline=True,  # a rendered file ends as its template does
        auto_reload=False,
    )
    env.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace
    filters: dict[str, Callable[..., Any]] = {
        name: _metered(JINJA_FILTERS[name], stringifies=name in _STRINGIFYING_FILTERS, sorts=name in _SORTING_FILTERS)
        for name in _JINJA_FILTERS_ALLOWED
    }
    filters |= {
        "replace": _metered(_filter_replace, stringifies=True),
        "join": _metered(_filter_join),
        "indent": _metered(_filter_indent, stringifies=True),
        "tojson": _metered(_filter_tojson),
        "b64encode": _metered(_filter_b64encode, stringifies=True),
        _LOOP_FILTER: _meter_loop,
        _EMIT_FILTER: _meter_emit,
        _CONCAT_FILTER: _meter_concat,
        _WEIGH_FILTER: _meter_weigh,
        _SLICE_FILTER: _meter_slice,
    }
    env.filters = filters
    # Jinja's tests (`is in`, `is sameas`, …) are harmless but cost their operands' size.
    env.tests = {name: _metered(cast("Callable[..., Any]", test)) for name, test in env.tests.items()}
    return env


_ENV: Final = _build_environment()


# --- compiling ---------------------------------------------------------------------------


def _filter_node(node: nodes.Node, name: str, *args: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


class _Meter(NodeTransformer):
    """Rewrites the template tree so loops, output, `~`, comparisons and slices are metered."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node.iter = _filter_node(node.iter, _LOOP_FILTER)
        self.generic_visit(node)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._emit(child) for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter_node(nodes.Tuple(node.nodes, "load", lineno=node.lineno), _CONCAT_FILTER)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _filter_node(node.expr, _WEIGH_FILTER)
        for operand in node.ops:
            operand.expr = _filter_node(operand.expr, _WEIGH_FILTER)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):
            return node
        bounds = [
            part or nodes.Const(None, lineno=node.lineno) for part in (node.arg.start, node.arg.stop, node.arg.step)
        ]
        return _filter_node(node.node, _SLICE_FILTER, *bounds)

    @staticmethod
    def _emit(child: nodes.Expr) -> nodes.Expr:
        if isinstance(child, nodes.TemplateData):
            child = nodes.Const(child.data, lineno=child.lineno)
        return _filter_node(child, _EMIT_FILTER)


_LOADING_TAGS: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
}


def _refuse_statically(tree: nodes.Template) -> _Problem | None:
    for node_type, tag in _LOADING_TAGS.items():
        for found in tree.find_all(node_type):
            return _Problem(
                TemplateError.REFUSED,
                f"refused by the sandbox at line {found.lineno}: {{% {tag} %}} is not allowed"
                " (a template cannot load other templates)",
            )
    for name in tree.find_all(nodes.Name):
        if name.name == "self":
            return _Problem(
                TemplateError.REFUSED, f"refused by the sandbox at line {name.lineno}: 'self' is not available"
            )
    for loop in tree.find_all(nodes.For):
        if loop.recursive:
            return _Problem(
                TemplateError.REFUSED, f"refused by the sandbox at line {loop.lineno}: recursive loops are not allowed"
            )
    return None


def _unknown_variable(tree: nodes.Template) -> _Problem | None:
    """A name the template reads but neither defines nor gets: a typo, caught before any key exists."""
    unknown = meta.find_undeclared_variables(tree) - set(TEMPLATE_VARIABLES)
    if not unknown:
        return None
    first = next(name for name in tree.find_all(nodes.Name) if name.name in unknown)  # in source order
    return _Problem(
        TemplateError.UNDEFINED,
        f"undefined variable {first.name!r} at line {first.lineno}; known: {', '.join(TEMPLATE_VARIABLES)}",
    )


def _static_names(tree: nodes.Template) -> frozenset[str]:
    names = {node.name for node in tree.find_all(nodes.Name)}
    names |= {node.attr for node in tree.find_all(nodes.Getattr)}
    names |= {const.value for const in tree.find_all(nodes.Const) if isinstance(const.value, str)}
    return frozenset(names)


@dataclass(frozen=True)
class _Compiled:
    template: Template
    static_names: frozenset[str]


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> _Compiled | _Problem:
    """Parse, check and compile one template source. Cached: sources repeat across renewals."""
    if len(source) > MAX_SOURCE_CHARS:
        return _Problem(TemplateError.LIMIT, f"the template is longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = _ENV.parse(source, filename=_TEMPLATE_FILENAME)
        refusal = _refuse_statically(tree) or _unknown_variable(tree)
        if refusal is not None:
            return refusal
        names = _static_names(tree)
        tree = _Meter().visit(tree)
        tree.set_environment(_ENV)
        code = _ENV.compile(tree, filename=_TEMPLATE_FILENAME)
    except TemplateSyntaxError as exc:  # also unknown filters and tests (TemplateAssertionError)
        # Only the template's own text is involved here, never key material.
        return _Problem(TemplateError.SYNTAX, f"syntax error at line {exc.lineno}: {exc.message}")
    except (RecursionError, MemoryError, SyntaxError):  # `[[[[…` or `x|f|f|f…` nested past the compilers' stacks
        return _Problem(TemplateError.LIMIT, "the template is nested too deeply")
    return _Compiled(Template.from_code(_ENV, code, _ENV.make_globals(None)), names)


def _compiled(source: object) -> _Compiled | _Problem:
    if not isinstance(source, str):
        return _Problem(TemplateError.SYNTAX, f"the template must be a string, not {type(source).__name__}")
    return _compile(source)


# --- rendering ---------------------------------------------------------------------------


def _template_variables(key: KeyMaterial) -> dict[str, Any]:
    variables = {
        "accessKeyId": key.access_key_id,
        "secretAccessKey": key.secret_access_key,
        "endpoint": key.endpoint or "",
        "region": key.region or "",
        "bucket": key.buckets[0] if key.buckets else "",
        "buckets": list(key.buckets),
        "prefix": key.prefixes[0] if key.prefixes else "",
        "prefixes": list(key.prefixes),
        "expiresAt": _expires_at(key),
        "keyId": key.key_id,
        "keyName": key.key_name,
        "provider": key.provider,
    }
    assert tuple(variables) == TEMPLATE_VARIABLES
    return variables


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line Jinja's rewritten traceback points at (its innermost template frame)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_one(
    source: object, variables: Mapping[str, Any], budget: _RenderState | None = None
) -> tuple[str, _Problem | None]:
    """Render one template, drawing on `budget` (the whole Secret's; default: a fresh one).

    On failure a problem whose text holds no values."""
    compiled = _compiled(source)
    if isinstance(compiled, _Problem):
        return "", compiled
    state = budget if budget is not None else _RenderState(static_names=compiled.static_names)
    state.static_names = compiled.static_names  # quotable names are this template's own
    state.sizes = {}  # sizes are remembered by object identity: never across templates
    token = _STATE.set(state)
    output = compiled.template.generate(variables)
    chunks: list[str] = []
    size = 0
    problem: _Problem | None = None
    try:
        for chunk in output:
            size += _utf8_len(chunk)
            if size > MAX_OUTPUT_BYTES:
                problem = _Problem(TemplateError.LIMIT, f"the output exceeds {MAX_OUTPUT_BYTES} bytes")
                break
            chunks.append(chunk)
    except Exception as exc:  # noqa: BLE001 -- every failure becomes a TemplateError; messages are vetted below
        problem = _describe_failure(exc)
    finally:
        if isinstance(output, Generator):
            output.close()  # stop a template cut off at the size cap while its budget is still in place
        _STATE.reset(token)
    return ("", problem) if problem is not None else ("".join(chunks), None)


# What an exception means, for those whose own text may hold values computed from the key.
# Checked in order (UnicodeError is a ValueError, ZeroDivisionError an ArithmeticError).
_FAILURE_KINDS: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (ZeroDivisionError, "division by zero"),
    (OverflowError, "a number out of range"),
    (UnicodeError, "text that cannot be encoded or decoded"),
    (TypeError, "a type error (an operation or filter got a value of the wrong type)"),
    (ValueError, "an invalid value (a conversion or argument failed)"),
    (LookupError, "a missing key or index"),
    (AttributeError, "a missing attribute"),
    (ArithmeticError, "an arithmetic error"),
)
_UNKNOWN_CALLABLE: Final = re.compile(r"No (filter|test) named ")


def _unknown_callable(exc: TemplateRuntimeError) -> str | None:
    """`No test named …`: the name may have been computed from the key, so quote it only if spelled out."""
    message = exc.message or ""
    found = _UNKNOWN_CALLABLE.match(message)
    if found is None:
        return None
    kind = found.group(1)
    state = _STATE.get()
    names = state.static_names if state is not None else frozenset()
    # Jinja writes f"No {kind} named {name!r}." and may append more; compare against the
    # template's own names only, never parse the (possibly computed) name out of the text.
    quoted = next((name for name in sorted(names) if message.startswith(f"No {kind} named {name!r}.")), None)
    return f"unknown {kind} {quoted!r}" if quoted is not None else f"unknown {kind} (its name was computed)"


def _describe_failure(exc: Exception) -> _Problem:
    line = _template_line(exc.__traceback__)
    at = f" at line {line}" if line is not None else ""
    # Only messages we wrote, or Jinja's about names spelled out in the source, are shown; any
    # other exception's text may hold a value computed from the key, so only its kind is.
    if isinstance(exc, _OverLimit):
        return _Problem(TemplateError.LIMIT, f"{exc.message}{at}")
    if isinstance(exc, _Refused):
        return _Problem(TemplateError.REFUSED, f"refused by the sandbox{at}: {exc.message}")
    if isinstance(exc, SecurityError):  # Jinja's own: its text may quote a value
        return _Problem(TemplateError.REFUSED, f"refused by the sandbox{at}")
    if isinstance(exc, UndefinedError):
        # Built by _SecretUndefined, which quotes only names the template spelled out.
        return _Problem(TemplateError.UNDEFINED, f"{exc.message}{at}")
    if isinstance(exc, TemplateRuntimeError):
        what = _unknown_callable(exc) or "a template runtime error"
        return _Problem(TemplateError.EVALUATION, f"evaluation failed{at}: {what}")
    if isinstance(exc, RecursionError):
        return _Problem(TemplateError.LIMIT, f"recursion too deep{at}")
    if isinstance(exc, MemoryError):
        return _Problem(TemplateError.LIMIT, f"out of memory{at}")
    kind = next((text for cls, text in _FAILURE_KINDS if isinstance(exc, cls)), "an error")
    return _Problem(TemplateError.EVALUATION, f"evaluation failed{at}: {kind} ({type(exc).__name__})")
