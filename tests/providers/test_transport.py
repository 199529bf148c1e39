"""The aiohttp-backed httpx transport: what a real socket does becomes the httpx outcome the clients map."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from storage_token.providers.transport import MAX_BODY, TOTAL_READS, AiohttpTransport, ssl_context

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
        payload = json.dumps({"ok": True, "n": 1}).encode()
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nX-Msg: caf\xc3\xa9\r\n"
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
    assert response.json() == {"ok": True, "n": 1}
    assert (b"X-Msg", b"caf\xc3\xa9") in response.headers.raw  # a non-ASCII header is an answer, not an error
    assert seen["line"] == "POST /b2api/v3/b2_create_key?x=a%2Fb HTTP/1.1"  # the URL is sent as encoded
    headers = seen["headers"]
    assert isinstance(headers, dict) and headers["authorization"] == "tok"
    assert headers["content-type"] == "application/json"
    assert headers["accept-encoding"] == "identity"  # compressed answers are never asked for
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


# -- the same outcome as httpx's own transport (what the clients were written against) -------------------------
TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "httpx": httpx.AsyncHTTPTransport,
    "aiohttp": AiohttpTransport,
}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


async def answering(
    answer: bytes, seen: list[bytes], context: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, int]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_a_header_injection_attempt_is_an_httpx_error(name: str) -> None:
    # e.g. an authorizationToken with CR/LF from a hostile B2 endpoint, sent back as the Authorization header
    seen: list[bytes] = []
    server, port = await answering(OK, seen)
    async with server, httpx.AsyncClient(transport=TRANSPORTS[name]()) as http:
        with pytest.raises(httpx.TransportError):
            await http.post(f"http://127.0.0.1:{port}/", headers={"Authorization": "t\r\nX-Injected: 1"}, json={})


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_an_endpoint_with_user_info_is_sent(name: str) -> None:
    seen: list[bytes] = []
    server, port = await answering(OK, seen)
    async with server, httpx.AsyncClient(transport=TRANSPORTS[name]()) as http:
        response = await http.post(f"http://user:pw@127.0.0.1:{port}/", data={"Action": "X"})
    assert response.status_code == 200


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_netrc_credentials_are_never_added(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("default login ops password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    seen: list[bytes] = []
    server, port = await answering(OK, seen)
    async with server, httpx.AsyncClient(transport=TRANSPORTS[name]()) as http:
        await http.post(f"http://127.0.0.1:{port}/", data={"Action": "X"})  # a US3 call: no Authorization
    assert b"authorization" not in seen[0].lower()


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_ssl_cert_file_is_trusted(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run(
        [*openssl, "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # a private CA, set through the chart's extraEnv
    ssl_context.cache_clear()  # read once per process: this test is a fresh process's first read
    request.addfinalizer(ssl_context.cache_clear)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    seen: list[bytes] = []
    server, port = await answering(OK, seen, context)
    async with server, httpx.AsyncClient(transport=TRANSPORTS[name]()) as http:
        assert (await http.get(f"https://localhost:{port}/")).status_code == 200
        with pytest.raises(httpx.ConnectError):  # the certificate names localhost, not the address
            await http.get(f"https://127.0.0.1:{port}/")


# -- bounds httpx's own transport does not have ----------------------------------------------------------------
async def test_a_server_dripping_bytes_still_ends_the_call(client: httpx.AsyncClient) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)  # each read well within the read timeout

    server, url = await serve(drip)
    async with server:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url, timeout=httpx.Timeout(0.3))
        assert asyncio.get_running_loop().time() - started < 0.3 * TOTAL_READS + 1


async def test_a_compressed_or_oversized_answer_is_refused(client: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b"0" * 1_000_000)
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb,
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        ]
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(next(answers))
        await writer.drain()
        writer.close()

    server, url = await serve(answer)
    async with server:
        with pytest.raises(httpx.DecodingError):
            await client.get(url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
