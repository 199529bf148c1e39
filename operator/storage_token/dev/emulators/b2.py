"""A strict loopback emulator of Backblaze B2's application-key API (v3 and v4), with a test-control surface.

    with B2Emulator({"KEY_ID": "KEY"}, ["photos", "logs"]) as emulator:
        emulator.faults.inject("lose_response", "b2_create_key")
        ...  # point a B2Provider at emulator.url

API: `GET|POST /b2api/v{3,4}/b2_authorize_account` (Basic auth) and
`POST /b2api/v{3,4}/{b2_create_key, b2_delete_key, b2_list_keys,
b2_list_buckets}` (JSON body, `Authorization: <token>`; GET with query
parameters works too). The rules live in `b2_store`. `apiInfo.storageApi.s3ApiUrl`
is `<url>/s3` unless `s3_api_url` is given (nothing answers there: it is only
handed out). Counters per (call, API version) are in `version_counts`.

Test control lives under `/_emulator/` (no auth, loopback only, never hit by
injected faults):

    GET    /_emulator/state            keys (never secrets), buckets, clock, counters
    POST   /_emulator/faults           {"kind": "status", "calls": ["b2_create_key"], "status": 429, "retry_after": 1}
    DELETE /_emulator/faults           clear every fault
    POST   /_emulator/clock/advance    {"seconds": 3600}
    POST   /_emulator/clock/freeze     {"at": 1700000000} (at: optional)
    POST   /_emulator/clock/unfreeze
    POST   /_emulator/tokens/expire    every auth token handed out so far answers expired_auth_token
    DELETE /_emulator/keys/<keyId>     delete a key out of band (drift tests)
    POST   /_emulator/reset            forget issued keys, tokens, faults and counters

Fault kinds: `status` answers a B2 error for that HTTP status (401 ->
expired_auth_token, 429 -> too_many_requests with `retry_after` as
Retry-After, 503 -> service_unavailable, ...) without applying the call;
`lose_response` applies it and drops the connection; `timeout` and `latency`
as in `faults`.

Run it alone with `storage-token emulator b2 --master-key ID:KEY --bucket NAME`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import hmac
import json
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from storage_token.dev.emulators.b2_store import ApiError, Key, KeyStore
from storage_token.dev.emulators.clock import Clock
from storage_token.dev.emulators.control import (
    CONTROL_PREFIX,
    ApiFaults,
    ControlledEmulator,
    control_call_name,
)
from storage_token.dev.emulators.faults import Fault
from storage_token.dev.emulators.server import Request, Response

VERSIONS = (3, 4)
_API_PATH = re.compile(r"/b2api/v(\d+)/(b2_[a-z_]+)")
_FAULT_KINDS = ("latency", "status", "retcode", "lose_response", "timeout")
_STATUS_CODES = {
    400: "bad_request",
    401: "expired_auth_token",
    403: "transaction_cap_exceeded",
    404: "not_found",
    408: "request_timeout",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}
_INT_PARAMS = ("maxKeyCount", "validDurationInSeconds")
_LIST_PARAMS = ("capabilities", "bucketIds", "bucketTypes")

Call = Callable[[int, Key, dict[str, Any]], dict[str, Any]]


class B2Emulator(ControlledEmulator):
    """B2's b2_authorize_account / b2_create_key / b2_delete_key / b2_list_keys / b2_list_buckets, in memory."""

    name = "b2"

    def __init__(
        self,
        master_keys: dict[str, str],
        buckets: list[str],
        auth_token_ttl: float = 86400,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        *,
        s3_api_url: str | None = None,
        account_id: str | None = None,
        bucket_types: dict[str, str] | None = None,
    ) -> None:
        """`master_keys`: keyId -> key, all of one account with every capability; `buckets`: names.

        `bucket_types`: name -> allPrivate (the default), allPublic, snapshot, restricted or shared.
        """
        super().__init__(host, port, clock)
        self.faults = ApiFaults()
        self.s3_api_url = s3_api_url
        self.store = KeyStore(
            master_keys,
            buckets,
            now=self.clock.now,
            auth_token_ttl=auth_token_ttl,
            account_id=account_id,
            bucket_types=bucket_types,
        )
        # (call, API version) -> requests, faulted ones included
        self.version_counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self._calls: dict[str, Call] = {
            "b2_create_key": self.store.create_key,
            "b2_delete_key": self.store.delete_key,
            "b2_list_keys": self.store.list_keys,
            "b2_list_buckets": self.store.list_buckets,
        }

    @property
    def account_id(self) -> str:
        return self.store.account_id

    def version_count(self, call: str, version: int) -> int:
        with self.lock:
            return self.version_counts[(call, version)]

    def keys_named(self, name: str) -> list[dict[str, Any]]:
        """Issued keys of that name, as the state shows them (no secrets)."""
        with self.lock:
            self.store.purge_expired()
            return [self.store.summary(k) for k in self.store.keys.values() if k.name == name and not k.master]

    def expire_tokens(self) -> int:
        with self.lock:
            return self.store.expire_tokens()

    # -- EmulatorServer ---------------------------------------------------------
    def call_name(self, request: Request) -> str:
        control = control_call_name(request)
        if control is not None:
            return control
        match = _API_PATH.fullmatch(request.path)
        if match is None:
            return "unknown"
        with self.lock:  # counted here so faulted requests show which version they were sent to
            self.version_counts[(match.group(2), int(match.group(1)))] += 1
        return match.group(2)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self.control(request)
        match = _API_PATH.fullmatch(request.path)
        try:
            if match is None:
                raise ApiError(404, "not_found", f"no such path {request.path}")
            version, call = int(match.group(1)), match.group(2)
            if version not in VERSIONS:
                raise ApiError(404, "not_found", f"API version v{version} is not emulated (v3, v4)")
            if call == "b2_authorize_account":
                return Response(200, self._authorize(version, request))
            run = self._calls.get(call)
            if run is None:
                raise ApiError(404, "not_found", f"{call} is not emulated")
            if request.method not in ("GET", "POST"):
                raise ApiError(405, "method_not_allowed", f"{request.method} is not allowed")
            body = _body(request)
            with self.lock:
                caller = self.store.caller(request.headers.get("authorization"))
                return Response(200, run(version, caller, body))
        except ApiError as error:
            return Response(error.status, error.body())

    def fault_response(self, fault: Fault, request: Request) -> Response:
        status = 503 if fault.kind == "retcode" else fault.status
        code = _STATUS_CODES.get(status, "error")
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return Response(status, {"status": status, "code": code, "message": f"injected {status} {code}"}, headers)

    # -- authorize ------------------------------------------------------------------
    def _authorize(self, version: int, request: Request) -> dict[str, Any]:
        key_id, secret = _basic_credentials(request.headers.get("authorization", ""))
        with self.lock:
            token, key = self.store.authorize(version, key_id, secret)
            allowed = self.store.allowed(version, key)
        # v4 nests what the key may do under `allowed`; v3 puts the same fields flat in storageApi.
        restrictions = {"allowed": allowed} if version >= 4 else allowed
        return {
            "accountId": self.store.account_id,
            "authorizationToken": token,
            "applicationKeyExpirationTimestamp": key.expires_ms,
            "apiInfo": {
                "storageApi": {
                    "infoType": "storageApi",
                    "apiUrl": self.url,
                    "downloadUrl": self.url,
                    "s3ApiUrl": self.s3_api_url or f"{self.url}/s3",
                    "absoluteMinimumPartSize": 5_000_000,
                    "recommendedPartSize": 100_000_000,
                    **restrictions,
                },
                "groupsApi": {"infoType": "groupsApi", "groupsApiUrl": self.url, "capabilities": []},
            },
        }

    # -- test control -------------------------------------------------------------
    def control_route(self, method: str, route: str, body: dict[str, Any]) -> Response | None:
        if (method, route) == ("POST", "tokens/expire"):
            return Response(200, {"expired": self.expire_tokens()})
        if method == "DELETE" and route.startswith("keys/"):
            with self.lock:
                removed = self.store.remove_key(route.removeprefix("keys/"))
            return Response(200 if removed else 404, {"removed": removed})
        return None

    def state(self) -> dict[str, Any]:
        """Keys without secrets, buckets, the clock and the counters."""
        with self.lock:
            self.store.purge_expired()
            keys = [self.store.summary(k) for k in self.store.keys.values() if not k.master]
            counters = [{"call": c, "outcome": o, "count": n} for (c, o), n in sorted(self.counters.items())]
            versions = [{"call": c, "version": v, "count": n} for (c, v), n in sorted(self.version_counts.items())]
            tokens = len(self.store.tokens)
        return {
            "now": self.clock.now(),
            "accountId": self.store.account_id,
            "buckets": [{"bucketName": n, "bucketId": i} for n, i in self.store.buckets.items()],
            "keys": keys,
            "tokens": tokens,
            "counters": counters,
            "versions": versions,
        }

    def journal(self, since: int) -> list[dict[str, Any]]:
        return self.store.journal[since:]

    def verify(self, access_key_id: str, secret: str) -> dict[str, Any]:
        key = self.store.keys.get(access_key_id)
        if key is None or key.master or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            return {"keyId": None, "live": False}
        return {"keyId": key.key_id, "live": not key.expired(self.clock.now())}

    def reset(self) -> None:
        self.faults.clear()
        with self.lock:
            for key_id in [k for k, key in self.store.keys.items() if not key.master]:
                del self.store.keys[key_id]
            self.store.tokens.clear()
            self.store.journal.clear()
            self.counters.clear()
            self.version_counts.clear()


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    key_id, sep, secret = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        raise ApiError(401, "unauthorized", "b2_authorize_account needs Basic authorization with keyId:key")
    return key_id, secret


def _body(request: Request) -> dict[str, Any]:
    """The JSON body of a POST, or the query parameters of a GET."""
    if request.method == "GET":
        params: dict[str, Any] = dict(parse_qsl(request.query))
        for name in _INT_PARAMS:
            if name in params and params[name].lstrip("-").isdigit():
                params[name] = int(params[name])
        for name in _LIST_PARAMS:
            if name in params:
                params[name] = [p for p in params[name].split(",") if p]
        return params
    try:
        body = json.loads(request.body) if request.body else {}
    except ValueError:
        raise ApiError(400, "bad_json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    return body


# -- command line ---------------------------------------------------------------------
def _pair(text: str) -> tuple[str, str]:
    key_id, sep, key = text.partition(":")
    if not sep or not key_id or not key:
        raise argparse.ArgumentTypeError(f"expected KEY_ID:KEY, got a value without both parts ({len(text)} chars)")
    return key_id, key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storage-token emulator b2", description="Run the B2 application-key emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--master-key", action="append", default=[], type=_pair, help="master key KEY_ID:KEY (repeatable)"
    )
    parser.add_argument("--bucket", action="append", default=[], help="bucket name (repeatable)")
    parser.add_argument("--auth-token-ttl", type=float, default=86400, help="seconds an auth token lives")
    parser.add_argument("--s3-api-url", help="s3ApiUrl to hand out (default: <url>/s3)")
    parser.add_argument("--account-id", help="accountId (default: derived from the master key ids)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground; print {"url": ...} as one JSON line; stop on SIGTERM or SIGINT."""
    args = build_parser().parse_args(argv)
    if not args.master_key:
        print("error: give at least one --master-key KEY_ID:KEY", file=sys.stderr)
        return 2
    emulator = B2Emulator(
        dict(args.master_key),
        list(args.bucket),
        auth_token_ttl=args.auth_token_ttl,
        host=args.host,
        port=args.port,
        s3_api_url=args.s3_api_url,
        account_id=args.account_id,
    )
    emulator.serve_until_signalled({"kind": "b2", "accountId": emulator.account_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())
