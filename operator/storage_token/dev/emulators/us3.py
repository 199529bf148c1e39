"""A strict loopback emulator of UCloud's US3 token API, with a test-control surface.

    with US3Emulator({"PUB": "PRIV"}, {"photos": "cn-bj2"}) as emulator:
        emulator.faults.inject("lose_response", "CreateUFileToken")
        ...  # point a US3Provider at emulator.url

The API answers at `/` (form POST or query string), checks the SHA1
signature independently of the client's code, and answers errors as HTTP
200 + RetCode like the real service. Test control lives under `/_emulator/`
(no signature; loopback only) and is never hit by injected faults:

    GET    /_emulator/state                 tokens (no private keys), clock, counters
    POST   /_emulator/faults                {"kind": "retcode", "calls": ["CreateUFileToken"], "retcode": 150, ...}
    DELETE /_emulator/faults                clear every fault
    POST   /_emulator/clock/advance         {"seconds": 3600}
    POST   /_emulator/clock/freeze          {"at": 1700000000} (at: optional)
    POST   /_emulator/clock/unfreeze
    DELETE /_emulator/tokens/<TokenId>      revoke out of band (drift tests)
    POST   /_emulator/reset                 forget tokens, faults and counters; clock back to real time

Run it alone with `storage-token emulator us3 --account PUB:PRIV --bucket NAME:REGION`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from storage_token.dev.emulators.clock import Clock
from storage_token.dev.emulators.control import (
    CONTROL_PREFIX,
    ApiFaults,
    ControlledEmulator,
    control_call_name,
)
from storage_token.dev.emulators.faults import Fault
from storage_token.dev.emulators.server import Request, Response
from storage_token.dev.emulators.us3_store import ApiError, Params, TokenStore

_FAULT_MESSAGES = {150: "Service unavailable", 153: "Too many requests, rate limited"}

Action = Callable[[str, Params], dict[str, Any]]


def signature_ok(params: Mapping[str, str], private_key: str) -> bool:
    """The documented scheme, written apart from the client's `signing` so each checks the other."""
    text = "".join(name + params[name] for name in sorted(params) if name != "Signature") + private_key
    expected = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return hmac.compare_digest(expected, params.get("Signature", ""))


class US3Emulator(ControlledEmulator):
    """UCloud's CreateUFileToken / DescribeUFileToken / DeleteUFileToken (and GetProjectList), in memory."""

    name = "us3"

    def __init__(
        self,
        accounts: dict[str, str],
        buckets: dict[str, str],
        token_limit: int = 100,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        *,
        default_region: str = "cn-bj2",
        projects: set[str] | None = None,
        default_project: str = "org-default",
        sub_accounts: set[str] | None = None,
    ) -> None:
        """`accounts`: PublicKey -> PrivateKey; `buckets`: name -> region; `projects`: None accepts any ProjectId.

        `default_project` is what an absent ProjectId means (GetProjectList marks it
        IsDefault); `sub_accounts` are PublicKeys that must name a ProjectId on every action.
        """
        super().__init__(host, port, clock)
        self.faults = ApiFaults()
        self.accounts = dict(accounts)
        self.store = TokenStore(
            buckets,
            token_limit=token_limit,
            default_region=default_region,
            projects=frozenset(projects) if projects is not None else None,
            now=self.clock.now,
            default_project=default_project,
            sub_accounts=frozenset(sub_accounts or ()),
        )
        self._actions: dict[str, Action] = {
            "CreateUFileToken": self.store.create,
            "DescribeUFileToken": self.store.describe,
            "DeleteUFileToken": self.store.delete,
            "GetProjectList": self.store.projects_of,  # UAccount, served at the same endpoint
        }

    # -- EmulatorServer ---------------------------------------------------------
    def call_name(self, request: Request) -> str:
        control = control_call_name(request)
        if control is not None:
            return control
        return _params(request).get("Action") or "unknown"

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return self.control(request)
        if request.path not in ("", "/"):
            return Response(404, {"Message": f"no such path {request.path}"})
        params = _params(request)
        action = params.get("Action", "")
        try:
            account = self._authenticate(params)
            run = self._actions.get(action)
            if run is None:
                raise ApiError(161, f"Action [{action}] not found")
            rest = {k: v for k, v in params.items() if k not in ("Action", "PublicKey", "Signature")}
            with self.lock:
                body = run(account, Params(rest))
        except ApiError as error:
            return Response(200, {"Action": f"{action}Response", "RetCode": error.retcode, "Message": error.message})
        return Response(200, {"Action": f"{action}Response", "RetCode": 0, **body})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.kind == "retcode":
            message = _FAULT_MESSAGES.get(fault.retcode, "Service temporarily failed, retry later")
            return Response(200, {"Action": f"{request.call}Response", "RetCode": fault.retcode, "Message": message})
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        return Response(fault.status, {"Message": f"injected HTTP {fault.status}"}, headers)

    # -- signature ----------------------------------------------------------------
    def _authenticate(self, params: Mapping[str, str]) -> str:
        if not params.get("Action"):
            raise ApiError(160, "Missing Action")
        if not params.get("Signature"):
            raise ApiError(170, "Missing signature")
        public_key = params.get("PublicKey", "")
        private_key = self.accounts.get(public_key)
        if private_key is None:
            raise ApiError(172, "User not exist")
        if not signature_ok(params, private_key):
            raise ApiError(171, "Signature verification failed")
        return public_key

    # -- test control ---------------------------------------------------------------
    def control_route(self, method: str, route: str, body: dict[str, Any]) -> Response | None:
        if method == "DELETE" and route.startswith("tokens/"):
            with self.lock:
                removed = self.store.tokens.pop(route.removeprefix("tokens/"), None)
            return Response(200 if removed else 404, {"removed": removed is not None})
        return None

    def state(self) -> dict[str, Any]:
        """Tokens without private keys, the clock and the per-call counters."""
        now = self.clock.now()
        with self.lock:
            tokens = [t.summary(now) for t in self.store.tokens.values()]
            counters = [{"call": c, "outcome": o, "count": n} for (c, o), n in sorted(self.counters.items())]
        return {"now": now, "tokens": tokens, "counters": counters}

    def journal(self, since: int) -> list[dict[str, Any]]:
        return self.store.journal[since:]

    def verify(self, access_key_id: str, secret: str) -> dict[str, Any]:
        now = self.clock.now()
        for token in self.store.tokens.values():
            if token.public_key == access_key_id and hmac.compare_digest(token.private_key.encode(), secret.encode()):
                return {"keyId": token.token_id, "live": not token.expired(now)}
        return {"keyId": None, "live": False}

    def reset(self) -> None:
        """Forget tokens, faults and counters; the clock runs at real time again."""
        self.faults.clear()
        self.clock.unfreeze()
        self.clock.advance(time.time() - self.clock.now())
        with self.lock:
            self.store.tokens.clear()
            self.store.journal.clear()
            self.counters.clear()


def _params(request: Request) -> dict[str, str]:
    """Query string, then the form body (the body wins on a clash)."""
    params = dict(parse_qsl(request.query, keep_blank_values=True))
    if request.body and "application/json" not in request.headers.get("content-type", ""):
        params.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


# -- command line ---------------------------------------------------------------------
def _pair(text: str, what: str) -> tuple[str, str]:
    left, sep, right = text.rpartition(":")
    if not sep or not left or not right:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return left, right


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storage-token emulator us3", description="Run the US3 token API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        type=lambda s: _pair(s, "PUBLIC:PRIVATE"),
        help="account key pair PUBLIC:PRIVATE (repeatable)",
    )
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        type=lambda s: _pair(s, "NAME:REGION"),
        help="bucket NAME:REGION (repeatable)",
    )
    parser.add_argument("--token-limit", type=int, default=100, help="tokens per account (RetCode 15038 beyond)")
    parser.add_argument(
        "--default-region", default="cn-bj2", help="region of tokens that name neither region nor bucket"
    )
    parser.add_argument("--project", action="append", help="known ProjectId (repeatable; default: any)")
    parser.add_argument("--default-project", default="org-default", help="what an absent ProjectId means")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground; print {"url": ...} as one JSON line; stop on SIGTERM or SIGINT."""
    args = build_parser().parse_args(argv)
    if not args.account:
        print("error: give at least one --account PUBLIC:PRIVATE", file=sys.stderr)
        return 2
    emulator = US3Emulator(
        dict(args.account),
        dict(args.bucket),
        token_limit=args.token_limit,
        host=args.host,
        port=args.port,
        default_region=args.default_region,
        projects=set(args.project) if args.project else None,
        default_project=args.default_project,
    )
    emulator.serve_until_signalled({"kind": "us3"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
