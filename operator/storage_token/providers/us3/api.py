"""One signed form POST per US3 action; every failure becomes a `ProviderError`.

No retries and no recovery here: `client.US3Provider` decides those. Logs
name the action and the parameter names, never values (the body carries the
signature and, in answers, token private keys).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from storage_token.providers.endpoints import host_of, require_https
from storage_token.providers.errors import BadRequestError, NotFoundError, ProviderError, RetryableError
from storage_token.providers.transport import AiohttpTransport
from storage_token.providers.us3.codes import PROVIDER, http_error, parse_retry_after, retcode_error
from storage_token.providers.us3.models import Project, TokenRequest, UFileToken
from storage_token.providers.us3.signing import Value, flatten, sign

log = logging.getLogger("storage_token.providers.us3")

USER_AGENT = "storage-token-operator (us3)"
DISPLAY_FULL = 1  # DescribeUFileToken: 0 is "partial" (undocumented which fields); anything else is full


class US3Api:
    """The three token actions of the UCloud API and GetProjectList, typed."""

    def __init__(
        self,
        endpoint: str,
        public_key: str,
        private_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        allow_insecure: bool = False,
    ) -> None:
        self.endpoint = require_https(endpoint, provider=PROVIDER, allow_insecure=allow_insecure)
        self._public_key = public_key
        self._private_key = private_key
        self._timeout = timeout
        self._host = host_of(endpoint)
        self._http = httpx.AsyncClient(
            transport=transport or AiohttpTransport(), timeout=timeout, headers={"User-Agent": USER_AGENT}
        )

    def __repr__(self) -> str:
        return f"US3Api(endpoint={self.endpoint!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- actions --------------------------------------------------------
    async def create_token(
        self, request: TokenRequest, *, region: str | None, project_id: str | None
    ) -> tuple[str, UFileToken | None]:
        """(TokenId, the token when the answer carried it). Not idempotent: never retry blind."""
        body = await self.call("CreateUFileToken", {**_location(region, project_id), **request.params()})
        raw_set = body.get("UFileTokenSet")
        token = UFileToken.from_payload(raw_set) if isinstance(raw_set, dict) and raw_set else None
        token_id = str(body.get("TokenId") or (token.token_id if token else ""))
        if not token_id:
            raise ProviderError(
                "CreateUFileToken answered without a TokenId", provider=PROVIDER, call="CreateUFileToken"
            )
        return token_id, token

    async def describe_tokens(
        self,
        *,
        region: str | None,
        project_id: str | None,
        token_id: str | None = None,
        token_name: str | None = None,
    ) -> list[UFileToken]:
        """Tokens matching the id or name (neither: all), private keys included.

        Display=1 is the documented full form; Display=0 shows "partial" info
        without saying which fields stay, so it is never used.
        A lookup that finds nothing is an empty list, whether the API says 15040 or answers [].
        """
        params: dict[str, Value] = {
            **_location(region, project_id),
            "TokenId": token_id,
            "TokenName": token_name,
            "Display": DISPLAY_FULL,
        }
        try:
            body = await self.call("DescribeUFileToken", params)
        except NotFoundError:
            return []
        data = body.get("DataSet") or []
        if not isinstance(data, list):
            raise ProviderError(
                "DescribeUFileToken answered a malformed DataSet", provider=PROVIDER, call="DescribeUFileToken"
            )
        return [UFileToken.from_payload(item) for item in data if isinstance(item, dict)]

    async def delete_token(self, token_id: str, *, region: str | None, project_id: str | None) -> None:
        """Raises NotFoundError (15040) when the token is already gone."""
        await self.call("DeleteUFileToken", {**_location(region, project_id), "TokenId": token_id})

    async def projects(self) -> list[Project]:
        """GetProjectList (UAccount): the account's projects; the default one has IsDefault."""
        body = await self.call("GetProjectList", {})
        data = body.get("ProjectSet") or []
        if not isinstance(data, list):
            raise ProviderError(
                "GetProjectList answered a malformed ProjectSet", provider=PROVIDER, call="GetProjectList"
            )
        return [Project.from_payload(item) for item in data if isinstance(item, dict)]

    # -- transport ------------------------------------------------------
    async def call(self, action: str, params: Mapping[str, Value]) -> dict[str, Any]:
        """POST the signed parameters; return the answer of a RetCode 0, else raise."""
        flat = flatten({"Action": action, **params})
        log.debug("us3 %s at %s with %s", action, self._host, ", ".join(sorted(flat)))
        try:
            response = await self._http.post(self.endpoint, data=sign(flat, self._public_key, self._private_key))
        except httpx.TimeoutException:
            raise RetryableError(
                f"no answer from {self._host} within {self._timeout:g}s", provider=PROVIDER, call=action
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise BadRequestError(
                f"endpoint {self.endpoint!r} is not a usable http(s) URL", provider=PROVIDER, call=action
            ) from None
        except httpx.TransportError as error:
            # Includes a connection dropped after the request was sent: the action may have happened.
            raise RetryableError(
                f"connection to {self._host} failed or was lost ({type(error).__name__})",
                provider=PROVIDER,
                call=action,
            ) from None
        except httpx.HTTPError as error:
            raise ProviderError(f"request failed ({type(error).__name__})", provider=PROVIDER, call=action) from None
        body = _json_object(response)
        message = self._redact(str(body.get("Message") or ""))
        if response.status_code != 200:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise http_error(response.status_code, message or response.reason_phrase, action, retry_after)
        if not body:
            raise ProviderError(
                f"{self._host} answered something that isn't a JSON object", provider=PROVIDER, call=action
            )
        retcode = _int(body.get("RetCode"))
        if retcode is None:
            raise ProviderError(f"{self._host} answered without a RetCode", provider=PROVIDER, call=action)
        log.debug("us3 %s answered RetCode %d", action, retcode)
        if retcode != 0:
            raise retcode_error(retcode, message, action)
        return body

    def _redact(self, text: str) -> str:
        # A server message should never echo the account key; make sure it can't.
        return text.replace(self._private_key, "***") if self._private_key else text


def _location(region: str | None, project_id: str | None) -> dict[str, Value]:
    return {"Region": region or None, "ProjectId": project_id or None}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None
