"""`storage-token provider {check|issue|list|revoke}`: try a provider account by hand.

Credentials come from the environment (UCLOUD_PUBLIC_KEY / UCLOUD_PRIVATE_KEY,
B2_APPLICATION_KEY_ID / B2_APPLICATION_KEY). Output is JSON on stdout; any
error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

from storage_token.api.provider import DEFAULT_ENDPOINTS
from storage_token.providers.base import IssuedKey, KeyInfo, KeySpec, Provider
from storage_token.providers.errors import NotFoundError, ProviderError
from storage_token.providers.registry import CREDENTIAL_ENV, CREDENTIAL_KEYS, KINDS, build_provider


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("provider", help="check a provider account; issue, list and revoke keys")
    actions = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("check", "verify the account credentials"),
        ("issue", "issue a key and print it (with its secret) as JSON"),
        ("list", "list keys as JSON (never secrets)"),
        ("revoke", "delete a key"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("--kind", choices=KINDS, required=True)
        sub.add_argument(
            "--endpoint",
            help="API endpoint; default as for a StorageProvider without spec.endpoint: "
            + ", ".join(f"{kind} {url}" for kind, url in sorted(DEFAULT_ENDPOINTS.items())),
        )
        sub.add_argument("--region", default="", help="US3 region, e.g. cn-bj2")
        sub.add_argument("--project-id", default="", help="US3 project id")
        sub.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
        sub.add_argument(
            "--allow-insecure",
            action="store_true",
            help="accept a plain http endpoint (a loopback emulator); credentials then travel unencrypted",
        )
        if action == "issue":
            sub.add_argument("--name", required=True, help="key name (B2: letters, digits and '-', 1-100)")
            sub.add_argument("--permission", action="append", default=[], help="read, write, delete, list, ...")
            sub.add_argument("--bucket", action="append", default=[], help="bucket name (repeatable)")
            sub.add_argument("--prefix", action="append", default=[], help="object key prefix (repeatable)")
            sub.add_argument("--allow-ip", action="append", default=[], help="US3 IP allow-list entry")
            sub.add_argument("--deny-ip", action="append", default=[], help="US3 IP deny-list entry")
            sub.add_argument("--capability", action="append", default=[], help="B2 raw capability (experts)")
            sub.add_argument("--duration", default="24h", help="lifetime, e.g. 3600, 90m, 24h, 7d")
        if action == "list":
            sub.add_argument("--name-prefix", default="", help="only keys whose name starts with this")
        if action == "revoke":
            sub.add_argument("--key-id", required=True, help="the key to delete; a key that isn't there is an error")
    parser.set_defaults(func=run)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'3600' / '90m' / '24h' / '7d' -> seconds."""
    text = text.strip()
    if text and text[-1] in _UNITS:
        value, unit = text[:-1], _UNITS[text[-1]]
    else:
        value, unit = text, 1
    try:
        seconds = int(float(value) * unit)
    except ValueError:
        raise ValueError(f"bad duration {text!r}: use seconds or a number with s, m, h or d") from None
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be positive")
    return seconds


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def issued_json(key: IssuedKey) -> dict[str, Any]:
    return {
        "keyId": key.key_id,
        "keyName": key.key_name,
        "accessKeyId": key.access_key_id,
        "secretAccessKey": key.secret_access_key,
        "expiresAt": _iso(key.not_after),
        "endpoint": key.endpoint,
        "region": key.region,
        "buckets": list(key.buckets),
        "prefixes": list(key.prefixes),
    }


def info_json(key: KeyInfo) -> dict[str, Any]:
    return {
        "keyId": key.key_id,
        "keyName": key.key_name,
        "expiresAt": _iso(key.not_after),
        "createdAt": _iso(key.created_at),
        "buckets": list(key.buckets),
        "prefixes": list(key.prefixes),
        "permissions": list(key.permissions),
    }


async def _act(provider: Provider, args: argparse.Namespace) -> Any:
    try:
        if args.action == "check":
            info = await provider.check()
            result: dict[str, Any] = {
                "ok": True,
                "provider": info.provider,
                "accountId": info.account_id,
                "endpoint": info.endpoint,
            }
            if info.project_id:
                result["projectId"] = info.project_id
            return result
        if args.action == "issue":
            spec = KeySpec(
                name=args.name,
                permissions=tuple(args.permission or ["read"]),
                duration_seconds=parse_duration(args.duration),
                buckets=tuple(args.bucket),
                prefixes=tuple(args.prefix),
                allow_ips=tuple(args.allow_ip),
                deny_ips=tuple(args.deny_ip),
                raw_capabilities=tuple(args.capability),
            )
            return issued_json(await provider.issue(spec))
        if args.action == "list":
            return [info_json(k) for k in await provider.list_keys(args.name_prefix)]
        if args.action == "revoke":
            # The clients count "already gone" as revoked (what the operator needs); by hand, a key that
            # isn't there is more likely a typo or the wrong account, so say so instead of "revoked".
            if await provider.get_key(args.key_id) is None:
                raise NotFoundError(
                    f"key {args.key_id!r} not found in this account; nothing revoked", provider=args.kind, call="revoke"
                )
            await provider.revoke(args.key_id)
            return {"revoked": args.key_id}
        raise ValueError(f"unknown action {args.action}")
    finally:
        await provider.aclose()


def run(args: argparse.Namespace) -> int:
    id_env, secret_env = CREDENTIAL_ENV[args.kind]
    id_key, secret_key = CREDENTIAL_KEYS[args.kind]
    credentials = {id_key: os.environ.get(id_env, ""), secret_key: os.environ.get(secret_env, "")}
    if not credentials[id_key] or not credentials[secret_key]:
        print(f"error: set {id_env} and {secret_env} in the environment", file=sys.stderr)
        return 2
    try:
        provider = build_provider(
            args.kind,
            credentials=credentials,
            endpoint=args.endpoint or DEFAULT_ENDPOINTS[args.kind],
            region=args.region,
            project_id=args.project_id,
            timeout=args.timeout,
            allow_insecure=args.allow_insecure,
        )
        result = asyncio.run(_act(provider, args))
    except ProviderError as error:
        print(f"error: {error.kind}: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
