"""The provider clients' default httpx transport: httpx requests and responses, sent by aiohttp.

The clients keep httpx's API (typed requests and responses, injectable transports, its exceptions);
only the wire goes through aiohttp, which the Kubernetes client uses too. In a burst, httpcore's
connection pool and h11 parsing cost several times the CPU of aiohttp's per request (see README,
"Benchmarks"). Failures are raised as the httpx exceptions the clients already map.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import certifi
import httpx
from yarl import URL

POOL_LIMIT = 100  # connections per transport (one transport per provider account)


def _ssl_context() -> ssl.SSLContext:
    # The CA bundle httpx would have used, so TLS trust does not change with the transport.
    return ssl.create_default_context(cafile=certifi.where())


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, limit: int = POOL_LIMIT) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that runs it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=_ssl_context())
            # trust_env: HTTPS_PROXY / NO_PROXY apply, as they did with httpx's own transport.
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("connect"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        # aiohttp adds no Accept-Encoding of its own: httpx's headers go as they are, and the body is
        # decoded by httpx (auto_decompress is off), exactly as with its default transport.
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            async with self._client().request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers],
                    content=content,
                    request=request,
                )
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout(str(error) or "connect timeout", request=request) from error
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise httpx.ReadTimeout(str(error) or "read timeout", request=request) from error
        except aiohttp.InvalidURL as error:
            raise httpx.UnsupportedProtocol(str(error), request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as error:
            # The request may have been applied before the connection went: the callers retry by name.
            raise httpx.RemoteProtocolError(str(error) or "server disconnected", request=request) from error
        except (aiohttp.ClientError, OSError) as error:
            raise httpx.NetworkError(str(error) or type(error).__name__, request=request) from error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
