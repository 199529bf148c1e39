"""b2sdk's RawSimulator served over loopback HTTP: a B2 peer we did not write, for contract tests.

The adapter is thin on purpose: it decodes the documented wire form, calls the
simulator's method of the same name, and writes the simulator's answer back.
Only where the simulator speaks Python instead of HTTP does it translate:
b2sdk exceptions become the status and code that b2sdk itself maps back to them
(`b2sdk._internal.exception.interpret_b2_error`), and the simulator's internal
asserts (unknown token, foreign accountId) become 401s.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from b2sdk._internal import exception as b2_errors
from b2sdk._internal.raw_simulator import RawSimulator

from storage_token.dev.emulators.faults import Fault
from storage_token.dev.emulators.server import EmulatorServer, Request, Response

_PATH = re.compile(r"/b2api/v(\d+)/(b2_[a-z_]+)")


class RawSimulatorServer(EmulatorServer):
    """One simulated account (its master key is `master`) with `buckets`, behind HTTP."""

    name = "b2sdk-rawsim"

    def __init__(self, buckets: list[str]) -> None:
        super().__init__()
        self.sim = RawSimulator()
        account_id, master_key = self.sim.create_account()
        self.master = (account_id, master_key)
        token = self.sim.authorize_account("", account_id, master_key)["authorizationToken"]
        for bucket in buckets:
            self.sim.create_bucket(RawSimulator.API_URL, token, account_id, bucket, "allPrivate")

    def expire_tokens(self) -> None:
        for token in list(self.sim.auth_token_to_key):
            self.sim.expire_auth_token(token)

    # -- EmulatorServer --------------------------------------------------------------
    def call_name(self, request: Request) -> str:
        match = _PATH.fullmatch(request.path)
        return match.group(2) if match else "unknown"

    def fault_response(self, fault: Fault, request: Request) -> Response:
        return Response(503, {"status": 503, "code": "service_unavailable", "message": "injected"})

    def dispatch(self, request: Request) -> Response:
        match = _PATH.fullmatch(request.path)
        if match is None:
            return _error(404, "not_found", request.path)
        call = match.group(2)
        try:
            with self.lock:
                if call == "b2_authorize_account":
                    return Response(200, _jsonable(self._authorize(request)))
                return Response(200, _jsonable(self._call(call, request)))
        except b2_errors.InvalidAuthToken as error:
            code = "expired_auth_token" if "expired" in (error.code or "") else error.code or "bad_auth_token"
            return _error(401, code, str(error))
        except b2_errors.Unauthorized as error:
            return _error(401, error.code or "unauthorized", str(error))
        except b2_errors.BadJson as error:
            return _error(400, "bad_json", str(error))
        except b2_errors.BadRequest as error:
            return _error(400, error.code or "bad_request", str(error))
        except b2_errors.NonExistentBucket as error:
            return _error(400, "bad_bucket_id", str(error))
        except AssertionError:
            return _error(401, "unauthorized", "the simulator refused the token or accountId")

    # -- calls -----------------------------------------------------------------------
    def _authorize(self, request: Request) -> dict[str, Any]:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            key_id, _, key = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key_id = key = ""
        if scheme.lower() != "basic":
            raise b2_errors.Unauthorized("needs Basic authorization", "unauthorized")
        answer: dict[str, Any] = self.sim.authorize_account("", key_id, key)
        answer["apiInfo"]["storageApi"]["apiUrl"] = self.url  # the simulator's own apiUrl is fictional
        return answer

    def _call(self, call: str, request: Request) -> dict[str, Any]:
        token = request.headers.get("authorization", "")
        if token not in self.sim.auth_token_to_key:
            raise b2_errors.InvalidAuthToken("unknown token", "bad_auth_token")
        body: dict[str, Any] = json.loads(request.body or b"{}")
        api = RawSimulator.API_URL
        if call == "b2_create_key":
            bucket_ids = body.get("bucketIds") or ([body["bucketId"]] if body.get("bucketId") else None)
            result: dict[str, Any] = self.sim.create_key(
                api,
                token,
                body.get("accountId"),
                body.get("capabilities"),
                body.get("keyName"),
                body.get("validDurationInSeconds"),
                bucket_ids,
                body.get("namePrefix"),
            )
        elif call == "b2_delete_key":
            result = self.sim.delete_key(api, token, body.get("applicationKeyId"))
        elif call == "b2_list_keys":
            result = self.sim.list_keys(
                api, token, body.get("accountId"), body.get("maxKeyCount") or 1000, body.get("startApplicationKeyId")
            )
        elif call == "b2_list_buckets":
            # The simulator takes no bucketTypes: it is dropped here, as the simulator would.
            result = self.sim.list_buckets(
                api, token, body.get("accountId"), body.get("bucketId"), body.get("bucketName")
            )
        else:
            raise b2_errors.BadRequest(f"{call} is not served", "bad_request")
        return result


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"status": status, "code": code, "message": message})


def _jsonable(value: Any) -> Any:
    """The simulator keeps some lists as sets (bucket options): JSON has only lists."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    return value
