"""Endpoints carry account credentials: https only, unless the provider explicitly allows otherwise.

Plain http is for loopback emulators and in-VPC gateways a user opted into
(`allow_insecure`); anything else is refused before a byte is sent.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from storage_token.providers.errors import BadRequestError


def require_https(url: str, *, provider: str, allow_insecure: bool, what: str = "endpoint", call: str = "") -> str:
    """`url` unchanged when it may be used; BadRequestError naming `what` when not."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme == "https" or (allow_insecure and scheme == "http"):
        return url
    if scheme == "http":
        raise BadRequestError(
            f"{what} {url!r} is plain http: use https, or allow insecure endpoints for this provider",
            provider=provider,
            call=call,
        )
    raise BadRequestError(f"{what} {url!r} is not an http(s) URL", provider=provider, call=call)


def host_of(url: str) -> str:
    """`host[:port]` of `url` for messages: never its user info (credentials), path or query string."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a malformed port; the URL itself is reported where it is used
        return "(unreadable URL)"
    if not host:
        return "(no host)"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host
