"""The aiohttp-backed httpx transport: what a real socket does becomes the httpx outcome the clients map."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import pytest

from storage_token.providers.transport import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=httpx.Timeout(1.0)) as http:
        yield http


async def test_a_request_and_its_answer_pass_through_unchanged(client: httpx.AsyncClient) -> None:
    seen: dict[str, object] = {}

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, headers, body = await read_request(reader)
        seen.update(line=line, headers=headers, body=body)
        payload = gzip.compress(json.dumps({"ok": True, "n": 1}).encode())
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + b"Retry-After: 7\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        await writer.drain()
        writer.close()

    server, url = await serve(echo)
    async with server:
        response = await client.post(
            f"{url}/b2api/v3/b2_create_key?x=a%2Fb", json={"keyName": "k"}, headers={"Authorization": "tok"}
        )

    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json() == {"ok": True, "n": 1}  # httpx decoded the gzip body itself
    assert seen["line"] == "POST /b2api/v3/b2_create_key?x=a%2Fb HTTP/1.1"  # the URL is sent as encoded
    headers = seen["headers"]
    assert isinstance(headers, dict) and headers["authorization"] == "tok"
    assert headers["content-type"] == "application/json"
    assert json.loads(seen["body"]) == {"keyName": "k"}  # type: ignore[arg-type]


async def test_a_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    server, url = await serve(lambda r, w: asyncio.sleep(0))
    server.close()
    await server.wait_closed()

    with pytest.raises(httpx.ConnectError):
        await client.get(url)


async def test_a_server_that_never_answers_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server, url = await serve(silent)
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url, timeout=httpx.Timeout(0.3))


async def test_a_connection_dropped_after_the_request_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # the call was received (and maybe applied); the answer is lost
        writer.close()

    server, url = await serve(drop)
    async with server:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, json={})


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout),
        (aiohttp.ServerTimeoutError(), httpx.ReadTimeout),
        (aiohttp.InvalidURL("ftp://x"), httpx.UnsupportedProtocol),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(), httpx.NetworkError),
    ],
)
async def test_each_aiohttp_failure_becomes_the_httpx_error_of_its_meaning(
    raised: Exception, expected: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some failures can't be made on loopback (a connect that hangs needs an unroutable network).
    transport = AiohttpTransport()

    def failing(*args: object, **kwargs: object) -> object:
        raise raised

    monkeypatch.setattr(transport._client(), "request", failing)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(expected):
            await http.get("http://127.0.0.1:9/")


async def test_closing_the_client_closes_its_connections() -> None:
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport):
        pass
    assert transport._session is None
