"""A threaded loopback HTTP server base shared by the emulators.

Subclasses implement `dispatch(request) -> Response` and
`fault_response(fault, request)`; the base applies faults, counts calls and
runs the server in a daemon thread (usable from sync and async tests and
from the command line).
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from storage_token.dev.emulators.clock import Clock
from storage_token.dev.emulators.faults import Fault, FaultInjector


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    call: str = ""  # the action / call name, set by the emulator's `call_name`


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(self.body if self.body is not None else {}).encode()


class EmulatorServer:
    """Base: start()/stop(), `url`, `clock`, `faults`, per-call `counters`."""

    name = "emulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.faults = FaultInjector()
        # (call, outcome) -> count; outcome is "ok", an error code, or a fault kind
        self.counters: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lock = threading.RLock()  # guards the emulator's state
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to implement -------------------------------------------------
    def call_name(self, request: Request) -> str:
        raise NotImplementedError

    def dispatch(self, request: Request) -> Response:
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: Request) -> Response:
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} emulator is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: don't wait 40 ms between

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # request lines can carry signed parameters: keep them out of logs

            def _serve(self) -> None:
                emulator._handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._httpd = Server((self._host, self._port), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def serve_until_signalled(self, announce: dict[str, Any]) -> None:
        """Command-line use: start, print `announce` plus the url as one JSON line, stop on SIGTERM/SIGINT."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        try:
            print(json.dumps({"url": self.url, **announce}), flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, call: str, outcome: str | None = None) -> int:
        with self.lock:
            return sum(n for (c, o), n in self.counters.items() if c == call and (outcome is None or o == outcome))

    # -- request handling -----------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path, _, query = handler.path.partition("?")
        request = Request(
            method=handler.command,
            path=path,
            query=query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        try:
            request.call = self.call_name(request)
        except Exception:  # noqa: BLE001 - a malformed request still gets an answer
            request.call = "unknown"
        lose = False
        response: Response | None = None
        for fault in self.faults.draw(request.call):
            if fault.kind == "latency":
                time.sleep(fault.latency)
            elif fault.kind == "timeout":
                time.sleep(fault.latency)
                self._bump(request.call, "timeout")
                self._drop(handler)
                return
            elif fault.kind == "lose_response":
                lose = True
            elif response is None:
                response = self.fault_response(fault, request)
                self._bump(request.call, f"fault-{fault.kind}")
        if response is None:
            try:
                response = self.dispatch(request)
            except Exception as error:  # noqa: BLE001 - an emulator bug must not hang the client
                response = Response(500, {"error": type(error).__name__})
            self._bump(request.call, "ok" if response.status == 200 and not _is_error(response) else _outcome(response))
        if lose:
            self._bump(request.call, "lost")
            self._drop(handler)
            return
        payload = response.encode()
        handler.send_response(response.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _bump(self, call: str, outcome: str) -> None:
        with self.lock:
            self.counters[(call, outcome)] += 1

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)


def _is_error(response: Response) -> bool:
    body = response.body
    return isinstance(body, dict) and body.get("RetCode") not in (None, 0)


def _outcome(response: Response) -> str:
    body = response.body if isinstance(response.body, dict) else {}
    if "RetCode" in body:
        return str(body["RetCode"])
    return str(body.get("code") or response.status)
