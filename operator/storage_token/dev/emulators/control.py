"""The test-control surface both emulators share, under `/_emulator/` (never hit by injected faults).

    GET    /_emulator/state             state (never secrets), clock, counters
    POST   /_emulator/faults            a Fault as JSON: {"kind": "status", "calls": ["b2_create_key"], "status": 503}
    DELETE /_emulator/faults            clear every fault
    POST   /_emulator/clock/advance     {"seconds": 3600}
    POST   /_emulator/clock/freeze      {"at": 1700000000} (at: optional)
    POST   /_emulator/clock/unfreeze
    POST   /_emulator/reset             forget keys, faults and counters
    GET    /_emulator/journal?since=N   every key created or deleted through the API, in order, from entry N
                                        (times on the emulator's clock; never secrets)
    POST   /_emulator/keys/verify       {"pairs": [{"accessKeyId": ..., "secret": ...}]}: which pairs are a
                                        key the emulator issued, and live (the secret is compared, never returned)

Each emulator adds its own routes through `control_route` (out-of-band deletion, token expiry).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any
from urllib.parse import parse_qsl
from urllib.request import urlopen

from storage_token.dev.emulators.faults import Fault, FaultInjector
from storage_token.dev.emulators.server import EmulatorServer, Request, Response

CONTROL_PREFIX = "/_emulator/"
CONTROL_CALL = "_emulator"
_FAULT_FIELDS = frozenset(f.name for f in fields(Fault) if f.init)
_FAULT_KINDS = ("latency", "status", "retcode", "lose_response", "timeout")


class ApiFaults(FaultInjector):
    """Faults hit API calls only: the control surface keeps working under `calls=None` faults."""

    def draw(self, call: str) -> list[Fault]:
        return [] if call.startswith(CONTROL_CALL) else super().draw(call)


def read_state(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """`GET /_emulator/state` of the emulator at `url`, as a test reads it: keys (never secrets), clock, counters."""
    with urlopen(f"{url.rstrip('/')}{CONTROL_PREFIX}state", timeout=timeout) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def fault_from_json(body: dict[str, Any]) -> Fault:
    unknown = set(body) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    calls = body.get("calls")
    names = None if calls is None else frozenset([calls] if isinstance(calls, str) else calls)
    fault = Fault(**{k: v for k, v in body.items() if k != "calls"}, calls=names)
    if fault.kind not in _FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}")
    return fault


def control_call_name(request: Request) -> str | None:
    """The counter name of a control request, or None for an API request."""
    if request.path.startswith(CONTROL_PREFIX):
        return CONTROL_CALL + "/" + request.path[len(CONTROL_PREFIX) :]
    return None


class ControlledEmulator(EmulatorServer):
    """An EmulatorServer with the shared control routes; subclasses give `state`, `reset`, `control_route`."""

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def journal(self, since: int) -> list[dict[str, Any]]:
        """Entries of the key journal from index `since`."""
        raise NotImplementedError

    def verify(self, access_key_id: str, secret: str) -> dict[str, Any]:
        """{"keyId": the issued key this pair is, or None, "live": bool}."""
        raise NotImplementedError

    def control_route(self, method: str, route: str, body: dict[str, Any]) -> Response | None:
        """Emulator-specific control routes; None when `route` isn't one."""
        return None

    def control(self, request: Request) -> Response:
        route = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            body = json.loads(request.body) if request.body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if request.method == "GET" and request.query:
                body = {**dict(parse_qsl(request.query)), **body}
            return self._route(request.method, route, body)
        except (ValueError, TypeError) as error:
            return Response(400, {"error": str(error)})

    def _route(self, method: str, route: str, body: dict[str, Any]) -> Response:
        if (method, route) == ("GET", "state"):
            return Response(200, self.state())
        if (method, route) == ("POST", "faults"):
            self.faults.add(fault_from_json(body))
            return Response(200, {"ok": True})
        if (method, route) == ("DELETE", "faults"):
            self.faults.clear()
            return Response(200, {"ok": True})
        if (method, route) == ("POST", "clock/advance"):
            self.clock.advance(float(body.get("seconds", 0)))
            return Response(200, {"now": self.clock.now()})
        if (method, route) == ("POST", "clock/freeze"):
            at = body.get("at")
            self.clock.freeze(float(at) if at is not None else None)
            return Response(200, {"now": self.clock.now()})
        if (method, route) == ("POST", "clock/unfreeze"):
            self.clock.unfreeze()
            return Response(200, {"now": self.clock.now()})
        if (method, route) == ("POST", "reset"):
            self.reset()
            return Response(200, {"ok": True})
        if (method, route) == ("GET", "journal"):
            since = int(body.get("since") or 0)
            with self.lock:
                return Response(200, {"entries": self.journal(since)})
        if (method, route) == ("POST", "keys/verify"):
            pairs = body.get("pairs") or []
            with self.lock:
                results = [self.verify(str(p.get("accessKeyId", "")), str(p.get("secret", ""))) for p in pairs]
            return Response(200, {"results": results})
        specific = self.control_route(method, route, body)
        if specific is not None:
            return specific
        return Response(404, {"error": f"no control route {method} {route}"})
