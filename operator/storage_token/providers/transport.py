"""The provider clients' default httpx transport: httpx requests and responses, sent by aiohttp.

The clients keep httpx's API (typed requests and responses, injectable transports, its exceptions);
only the wire goes through aiohttp, which the Kubernetes client uses too. In a burst, httpcore's
connection pool and h11 parsing cost several times the CPU of aiohttp's per request (see README,
"Benchmarks"). Failures are raised as the httpx exceptions the clients already map.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import certifi
import httpx
from yarl import URL

POOL_LIMIT = 100  # connections per transport (one transport per provider account)
KEEPALIVE = 5.0  # seconds an idle connection is kept: httpx's default (a stale reuse costs a recovery)
MAX_BODY = 16 * 1024 * 1024  # bytes of one answer; a B2 key listing page is far below
TOTAL_READS = 3  # a whole call may take this many read timeouts: a server dripping bytes still ends
# NO_PROXY matching as urllib (and so httpx) reads it; not in the type stubs.
_bypass: Callable[[str, dict[str, str]], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """What httpx's default transport trusts: SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle.

    Loaded once per process (about 60 ms each): every provider account's connections share it."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, limit: int = POOL_LIMIT) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # Proxies from the environment, read once. aiohttp's own trust_env would also read ~/.netrc on every
        # request and send its credentials to any endpoint: never.
        self._proxies = urllib.request.getproxies_environment()

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that runs it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=ssl_context(), keepalive_timeout=KEEPALIVE)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _proxy(self, url: URL) -> str | None:
        if not self._proxies or (url.host and _bypass(url.host, self._proxies)):
            return None
        return self._proxies.get(url.scheme or "") or self._proxies.get("all")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        read = timeouts.get("read")
        timeout = aiohttp.ClientTimeout(
            total=None if read is None else TOTAL_READS * read,
            connect=timeouts.get("connect"),
            sock_connect=timeouts.get("connect"),
            sock_read=read,
        )
        body = await request.aread()
        # Uncompressed answers only: a small gzip body could expand without bound when httpx decodes it.
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in request.headers.raw
            if k.lower() != b"accept-encoding"
        ] + [("Accept-Encoding", "identity")]
        url = URL(str(request.url), encoded=True).with_user(None)  # httpx already turned user info into a header
        try:
            async with self._client().request(
                request.method,
                url,
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
                proxy=self._proxy(url),
            ) as response:
                if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                    raise httpx.DecodingError("a compressed answer was refused", request=request)
                content = await _bounded_body(response, request)
                return httpx.Response(
                    status_code=response.status,
                    headers=list(response.raw_headers),  # bytes as received: httpx keeps them as they are
                    content=content,
                    request=request,
                )
        except aiohttp.InvalidURL as error:
            raise httpx.UnsupportedProtocol("not a usable http(s) URL", request=request) from error
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout("connect timeout", request=request) from error
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise httpx.ReadTimeout("read timeout", request=request) from error
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(type(error).__name__, request=request) from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as error:
            # The request may have been applied before the connection went: the callers retry by name.
            raise httpx.RemoteProtocolError("server disconnected", request=request) from error
        except (aiohttp.ClientError, OSError) as error:
            raise httpx.NetworkError(type(error).__name__, request=request) from error
        except ValueError as error:  # aiohttp refused to build the request (e.g. CR/LF in a header)
            raise httpx.LocalProtocolError(type(error).__name__, request=request) from error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _bounded_body(response: aiohttp.ClientResponse, request: httpx.Request) -> bytes:
    if (response.content_length or 0) > MAX_BODY:
        raise httpx.RemoteProtocolError("the answer is too large", request=request)
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise httpx.RemoteProtocolError("the answer is too large", request=request)
        chunks.append(chunk)
    return b"".join(chunks)
