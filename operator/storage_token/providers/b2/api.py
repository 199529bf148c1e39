"""One authorized JSON call to the B2 native API; every failure becomes a `ProviderError`.

The account authorization is cached and shared by concurrent calls. A call
whose token is refused (bad_auth_token / expired_auth_token) authorizes again
once and is sent again once; a second refusal is a CredentialsError.
Idempotent calls retry transient errors here; `b2_create_key` must not
(`client.B2Provider.issue` resolves its lost answers by name).

Logs name the call and the API version, never bodies, tokens or keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from storage_token.providers.b2.codes import PROVIDER, TOKEN_REJECTED, error_for, parse_retry_after
from storage_token.providers.b2.models import Authorization
from storage_token.providers.endpoints import host_of, require_https
from storage_token.providers.errors import BadRequestError, CredentialsError, ProviderError, RetryableError
from storage_token.providers.retry import RetryPolicy, Sleep, with_retries
from storage_token.providers.transport import AiohttpTransport

log = logging.getLogger("storage_token.providers.b2")
T = TypeVar("T")

AUTHORIZE_VERSION = 4  # v4 authorizes every kind of key; its token works on v3 calls too
USER_AGENT = "storage-token-operator (b2)"


class _TokenRefused(Exception):
    """The auth token was refused: authorize again (never leaves this module)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class B2Api:
    """Authorize, cache the token, POST calls to `{apiUrl}/b2api/vN/<call>`."""

    def __init__(
        self,
        key_id: str,
        key: str,
        *,
        endpoint: str,
        transport: httpx.AsyncBaseTransport | None,
        timeout: float,
        retry: RetryPolicy,
        sleep: Sleep,
        allow_insecure: bool = False,
    ) -> None:
        self._allow_insecure = allow_insecure
        self.endpoint = require_https(endpoint, provider=PROVIDER, allow_insecure=allow_insecure).rstrip("/")
        self._key_id = key_id
        self._key = key
        self._timeout = timeout
        self._retry = retry
        self._sleep = sleep
        self._auth: Authorization | None = None
        self._auth_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(
            transport=transport or AiohttpTransport(), timeout=timeout, headers={"User-Agent": USER_AGENT}
        )

    def __repr__(self) -> str:
        return f"B2Api(endpoint={self.endpoint!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- authorization -----------------------------------------------------
    async def authorization(self, *, stale: Authorization | None = None, fresh: bool = False) -> Authorization:
        """The cached authorization; a new one when there is none, when `fresh`, or when `stale` is still cached."""
        async with self._auth_lock:
            if fresh or self._auth is None or (stale is not None and self._auth is stale):
                self._auth = await self._retrying("b2_authorize_account", self._authorize)
            return self._auth

    async def _authorize(self) -> Authorization:
        url = f"{self.endpoint}/b2api/v{AUTHORIZE_VERSION}/b2_authorize_account"
        body = await self._send(
            "b2_authorize_account", "GET", url, auth=httpx.BasicAuth(self._key_id, self._key), authorizing=True
        )
        auth = Authorization.from_payload(body)
        if not auth.complete:
            raise ProviderError(
                "b2_authorize_account answered without accountId, token or apiUrl",
                provider=PROVIDER,
                call="b2_authorize_account",
            )
        # The token goes to the apiUrl the server named: it must be as safe as the endpoint.
        require_https(
            auth.api_url,
            provider=PROVIDER,
            allow_insecure=self._allow_insecure,
            what="b2_authorize_account apiUrl",
            call="b2_authorize_account",
        )
        log.debug("b2 authorized account %s (api %s)", auth.account_id, auth.api_url)
        return auth

    # -- calls ---------------------------------------------------------------
    async def call(
        self, version: int, call: str, body: dict[str, Any], *, retry: bool = True, account: bool = True
    ) -> dict[str, Any]:
        """POST `body` (plus the accountId when `account`); retried on transient errors when `retry`."""

        async def once() -> dict[str, Any]:
            auth = await self.authorization()
            try:
                return await self._post(auth, version, call, body, account)
            except _TokenRefused as refused:
                log.info("b2 %s: auth token refused (%s); authorizing again", call, refused.code)
            auth = await self.authorization(stale=auth)
            try:
                return await self._post(auth, version, call, body, account)
            except _TokenRefused as refused:
                raise CredentialsError(
                    "the auth token was refused again right after authorizing",
                    provider=PROVIDER,
                    call=call,
                    code=refused.code,
                ) from None

        return await (self._retrying(call, once) if retry else once())

    async def _post(
        self, auth: Authorization, version: int, call: str, body: dict[str, Any], account: bool
    ) -> dict[str, Any]:
        payload = {"accountId": auth.account_id, **body} if account else body
        url = f"{auth.api_url}/b2api/v{version}/{call}"
        log.debug("b2 %s v%d", call, version)
        return await self._send(call, "POST", url, json=payload, headers={"Authorization": auth.token})

    async def _send(
        self, call: str, method: str, url: str, *, authorizing: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise RetryableError(
                f"no answer from {host_of(url)} within {self._timeout:g}s", provider=PROVIDER, call=call, code="timeout"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            raise BadRequestError(f"{url!r} is not a usable http(s) URL", provider=PROVIDER, call=call) from None
        except httpx.TransportError as error:
            # Includes a connection dropped after the request was sent: the call may have been applied.
            raise RetryableError(
                f"connection to {host_of(url)} failed or was lost ({type(error).__name__})",
                provider=PROVIDER,
                call=call,
            ) from None
        except httpx.HTTPError as error:
            raise ProviderError(f"request failed ({type(error).__name__})", provider=PROVIDER, call=call) from None
        body = _json_object(response)
        if response.status_code == 200:
            return body
        code = str(body.get("code") or "")
        message = self._redact(str(body.get("message") or ""))
        log.debug("b2 %s answered %d %s", call, response.status_code, code)
        if response.status_code == 401 and code in TOKEN_REJECTED and not authorizing:
            raise _TokenRefused(code)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise error_for(
            response.status_code, code, message, call=call, retry_after=retry_after, authorizing=authorizing
        )

    async def _retrying(self, call: str, step: Callable[[], Awaitable[T]]) -> T:
        def on_retry(error: RetryableError, delay: float) -> None:
            log.warning("b2 %s: %s; trying again in %.2fs", call, error, delay)

        return await with_retries(step, self._retry, sleep=self._sleep, on_retry=on_retry)

    def _redact(self, text: str) -> str:
        # A server message must never carry the account key or the token out of here.
        secrets = [self._key] + ([self._auth.token] if self._auth else [])
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
