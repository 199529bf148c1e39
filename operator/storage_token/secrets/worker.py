"""Render Secret templates in worker processes with hard memory, CPU and wall-time limits.

The sandbox in `secret_render` meters every operation, but templates are tenant input and one
operator serves every tenant, so rendering is also fenced from outside: it runs in persistent
worker processes (never on the event loop) that cap their own address space (RLIMIT_AS) and CPU
time (RLIMIT_CPU), and the parent kills and replaces a worker that overruns the wall-clock
timeout. A render stopped that way is a `TemplateError` naming the template data key it was on,
with no runtime text::

    renderer = BoundedRenderer()
    placeholder_data = await renderer.rehearse(spec.secret.template, spec.buckets, spec.prefixes)
    data = await renderer.render(material, spec.secret.template)
    await renderer.aclose()

Wire format, both ways over the worker's stdin/stdout: a 4-byte big-endian length, then UTF-8
JSON (never pickle: a compromised worker must not be able to run code in the operator). The
worker starts with an empty environment (`python -I`, no variables), so it holds none of the
operator's credentials or service-account settings.

Run as ``python -m storage_token.secrets.worker --memory BYTES --cpu SECONDS`` by the parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from storage_token.api.token import SecretTemplate
from storage_token.secrets.render import KeyMaterial, TemplateError, limit_error, render_secret_data, validate_template

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_WALL_SECONDS",
    "BoundedRenderer",
    "RenderWorkerError",
    "placeholder_material",
]

DEFAULT_WALL_SECONDS: Final = 1.0
DEFAULT_MEMORY_BYTES: Final = 64 * 1024 * 1024  # address space a render may add to the worker's baseline
_MAX_FRAME: Final = 16 * 1024 * 1024  # a reply holds at most a Secret's data (512 KiB of text, JSON-escaped)
_HEADER: Final = struct.Struct(">I")
# Placeholders are rendered for every provider kind: a template's branches on `provider` run too.
REHEARSAL_PROVIDERS: Final = ("b2", "us3")


class RenderWorkerError(RuntimeError):
    """The render worker could not be started (not a problem with the template: retry later)."""


# --- placeholder key material -----------------------------------------------------------------


def placeholder_material(provider: str, buckets: tuple[str, ...], prefixes: tuple[str, ...]) -> KeyMaterial:
    """Key material shaped like a real key of `provider` (real lengths, real variable names).

    Used to render a template before any key exists. Values are as long as the provider's real
    ones (B2: 25-character key id, 31-character key; key names at their 100-character maximum),
    so the rendered size is representative, and `provider` is the real name, so a template
    cannot tell a rehearsal by it.
    """
    key_name = "sto-" + "0" * 96
    expires_at = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
    if provider == "b2":
        key_id = "0000000000000000000000000"
        secret = "K000" + "0" * 27
        return KeyMaterial(
            provider="b2",
            key_id=key_id,
            key_name=key_name,
            access_key_id=key_id,
            secret_access_key=secret,
            endpoint="https://s3.us-west-000.backblazeb2.com",
            region="us-west-000",
            buckets=buckets,
            prefixes=prefixes,
            expires_at=expires_at,
            native={"B2_APPLICATION_KEY_ID": key_id, "B2_APPLICATION_KEY": secret},
        )
    public = "TOKEN_00000000-0000-0000-0000-000000000000"
    private = "0" * 40
    region = "cn-bj"
    endpoint = "https://s3-cn-bj.ufileos.com"
    return KeyMaterial(
        provider=provider,
        key_id=public,
        key_name=key_name,
        access_key_id=public,
        secret_access_key=private,
        endpoint=endpoint,
        region=region,
        buckets=buckets,
        prefixes=prefixes,
        expires_at=expires_at,
        native={
            "US3_PUBLIC_KEY": public,
            "US3_PRIVATE_KEY": private,
            "US3_REGION": region,
            "US3_S3_ENDPOINT": endpoint,
        },
    )


# --- wire format ---------------------------------------------------------------------------------


def _key_to_wire(key: KeyMaterial) -> dict[str, Any]:
    return {
        "provider": key.provider,
        "key_id": key.key_id,
        "key_name": key.key_name,
        "access_key_id": key.access_key_id,
        "secret_access_key": key.secret_access_key,
        "endpoint": key.endpoint,
        "region": key.region,
        "buckets": list(key.buckets),
        "prefixes": list(key.prefixes),
        "expires_at": key.expires_at.isoformat() if key.expires_at is not None else None,
        "native": dict(key.native),
    }


def _key_from_wire(wire: Mapping[str, Any]) -> KeyMaterial:
    expires = wire["expires_at"]
    return KeyMaterial(
        provider=wire["provider"],
        key_id=wire["key_id"],
        key_name=wire["key_name"],
        access_key_id=wire["access_key_id"],
        secret_access_key=wire["secret_access_key"],
        endpoint=wire["endpoint"],
        region=wire["region"],
        buckets=tuple(wire["buckets"]),
        prefixes=tuple(wire["prefixes"]),
        expires_at=datetime.fromisoformat(expires) if expires is not None else None,
        native=dict(wire["native"]),
    )


def _template_to_wire(template: SecretTemplate) -> dict[str, Any]:
    # Pairs, not an object: the order of the data keys is the order of the Secret's keys.
    return {
        "preset": template.preset,
        "data": [[name, source] for name, source in template.data.items()],
        "include_preset": template.include_preset,
    }


def _template_from_wire(wire: Mapping[str, Any]) -> SecretTemplate:
    return SecretTemplate(
        preset=wire["preset"],
        data={name: source for name, source in wire["data"]},
        include_preset=wire["include_preset"],
    )


def _encode(message: object) -> bytes:
    # ensure_ascii: a lone surrogate a template produced travels as "\ud800" instead of failing.
    payload = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(len(payload)) + payload


def _error_to_wire(error: TemplateError) -> dict[str, Any]:
    return {"error": {"message": str(error), "reason": error.reason, "secret_key": error.secret_key}}


def _error_from_wire(wire: Mapping[str, Any]) -> TemplateError:
    return TemplateError(str(wire["message"]), reason=str(wire["reason"]), secret_key=wire["secret_key"])


# --- the worker process ----------------------------------------------------------------------------


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux), or None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit_self(memory_bytes: int) -> int:
    """Cap this process's memory at its current size + `memory_bytes`; returns the baseline."""
    import resource  # POSIX only; the worker needs it, the parent never does

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core otherwise
    baseline = _address_space()
    if baseline is not None:
        resource.setrlimit(resource.RLIMIT_AS, (baseline + memory_bytes, baseline + memory_bytes))
        return baseline
    # No /proc (not Linux): the data segment is the best available bound.
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (baseline + memory_bytes, baseline + memory_bytes))
    return baseline


def _allow_cpu(seconds: int) -> None:
    """Let the next request use `seconds` more CPU time; SIGXCPU kills the worker after that.

    RLIMIT_CPU counts the process's whole life, so the soft limit moves forward per request
    (the hard limit stays where it was, which is what lets it move).
    """
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _read_frame(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # the parent closed the pipe: time to go
    (length,) = _HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    return json.loads(payload)


def _handle(request: Mapping[str, Any], send: Callable[[object], None]) -> dict[str, Any]:
    """Serve one request: the reply, with `healthy` false when the worker should exit after it."""

    def progress(name: str) -> None:
        send({"progress": name})

    try:
        template = _template_from_wire(request["template"])
        if request["op"] == "rehearse":
            validate_template(template)
            biggest: dict[str, str] = {}
            for wire in request["keys"]:
                data = render_secret_data(_key_from_wire(wire), template, before_each=progress)
                if sum(map(len, data.values())) >= sum(map(len, biggest.values())):
                    biggest = data
            return {"ok": biggest, "healthy": True}
        return {
            "ok": render_secret_data(_key_from_wire(request["key"]), template, before_each=progress),
            "healthy": True,
        }
    except TemplateError as error:
        # After an allocation failed at the memory limit the heap may be in pieces: start afresh.
        return _error_to_wire(error) | {"healthy": "out of memory" not in str(error)}
    except MemoryError:
        return _error_to_wire(limit_error(None, "rendering exceeded the memory limit")) | {"healthy": False}
    except Exception as error:  # noqa: BLE001 -- a bug here must not kill the worker silently, nor show text
        failure = TemplateError(
            f"Secret template: rendering failed unexpectedly ({type(error).__name__})",
            reason=TemplateError.EVALUATION,
        )
        return _error_to_wire(failure) | {"healthy": False}


def main(argv: list[str] | None = None) -> None:
    """The worker: limit itself, say it is ready, then serve requests until stdin closes."""
    parser = argparse.ArgumentParser(prog="storage_token.secrets.worker")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_BYTES)
    parser.add_argument("--cpu", type=int, default=2)
    args = parser.parse_args(argv)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the parent's pipe

    def send(message: object) -> None:
        replies.write(_encode(message))
        replies.flush()

    baseline = _limit_self(args.memory)
    send({"ready": True, "baseline": baseline})
    while True:
        request = _read_frame(requests)
        if request is None:
            return
        _allow_cpu(args.cpu)
        reply = _handle(request, send)
        send(reply)
        if not reply["healthy"]:
            return


# --- the parent side ---------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: asyncio.subprocess.Process
    served: int = 0


@dataclass(frozen=True)
class _Outcome:
    """A rehearsal's result, as cached: the data, or the error's parts."""

    data: Mapping[str, str] | None
    error: tuple[str, str, str | None] | None  # message, reason, secret key
    expires: float | None  # monotonic time; None: kept until evicted
    size: int

    def result(self) -> dict[str, str]:
        if self.error is not None:
            message, reason, secret_key = self.error
            raise TemplateError(message, reason=reason, secret_key=secret_key)
        assert self.data is not None
        return dict(self.data)


class _StoppedAtLimit(TemplateError):
    """A render the parent stopped (killed, or the worker died): maybe only a slow machine."""


class _WorkerStopped(Exception):
    """Internal: the worker overran a limit (killed, or its pipe closed)."""

    def __init__(self, timed_out: bool) -> None:
        super().__init__()
        self.timed_out = timed_out


class BoundedRenderer:
    """Renders Secret templates in limited worker processes; safe for many concurrent tasks.

    `workers` processes serve renders in parallel (requests queue for a free one); each is
    started on first need and replaced after a kill, a crash, or `renders_per_worker` renders.
    Rehearsal outcomes are cached per (template, buckets, prefixes) digest: failures so a bad
    template costs nothing on later reconciles (those from a killed render expire after
    `kill_retry_seconds`, in case the machine was just slow), successes so a good one doesn't
    either. Real renders are never cached: they hold key material.
    """

    def __init__(
        self,
        *,
        wall_seconds: float = DEFAULT_WALL_SECONDS,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        workers: int = 1,
        cache_entries: int = 1024,
        cache_bytes: int = 8 * 1024 * 1024,
        kill_retry_seconds: float = 600.0,
        renders_per_worker: int = 1000,
        startup_seconds: float = 30.0,
    ) -> None:
        if workers < 1 or wall_seconds <= 0 or memory_bytes <= 0:
            raise ValueError("BoundedRenderer needs at least one worker, a positive time and memory limit")
        self.wall_seconds = wall_seconds
        self.memory_bytes = memory_bytes
        self.cpu_seconds = math.ceil(wall_seconds) + 1  # a backstop; the wall clock normally stops it first
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._cache: OrderedDict[str, _Outcome] = OrderedDict()
        self._cache_entries, self._cache_bytes, self._cached_bytes = cache_entries, cache_bytes, 0
        self._kill_retry_seconds = kill_retry_seconds
        self._renders_per_worker = renders_per_worker
        self._startup_seconds = startup_seconds
        self._inflight: dict[str, asyncio.Task[_Outcome]] = {}
        self._reaping: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.started = 0  # workers started so far (for metrics and tests)
        self.requests = 0  # requests sent to workers
        self.killed = 0  # workers killed at a limit

    # -- public API -----------------------------------------------------------------------

    async def render(self, key: KeyMaterial, template: SecretTemplate) -> dict[str, str]:
        """The Secret's data for `key` (see `render_secret_data`); raises TemplateError."""
        request = {"op": "render", "key": _key_to_wire(key), "template": _template_to_wire(template)}
        return await self._request(request)

    async def rehearse(
        self,
        template: SecretTemplate,
        buckets: tuple[str, ...],
        prefixes: tuple[str, ...],
        providers: tuple[str, ...] = REHEARSAL_PROVIDERS,
    ) -> dict[str, str]:
        """Validate and render `template` with placeholder keys, before any key exists.

        Returns the placeholder data (of the largest rendering), for Secret-shape checks;
        raises TemplateError. Cached per (template, buckets, prefixes, providers).
        """
        digest = _digest(template, buckets, prefixes, providers)
        cached = self._cached(digest)
        if cached is not None:
            return cached.result()
        task = self._inflight.get(digest)
        if task is None:
            task = asyncio.create_task(self._rehearse_uncached(digest, template, buckets, prefixes, providers))
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._inflight.pop(digest, None))
        outcome = await asyncio.shield(task)  # a cancelled caller leaves the rehearsal to the others
        return outcome.result()

    async def start(self) -> None:
        """Start one worker now rather than on the first render (startup costs ~0.1-0.3 s)."""
        async with self._slots:
            if not self._idle:
                self._idle.append(await self._spawn())

    async def aclose(self) -> None:
        """Stop every worker. Renders still running fail; the renderer can't be used again."""
        self._closed = True
        for task in list(self._inflight.values()):
            task.cancel()
        idle, self._idle = self._idle, []
        for worker in idle:
            self._stop(worker, kill=False)
        if self._reaping:
            await asyncio.wait(set(self._reaping), timeout=5)
        for task in list(self._reaping):  # workers that ignored a closed stdin
            task.cancel()

    # -- rehearsal cache --------------------------------------------------------------------

    def _cached(self, digest: str) -> _Outcome | None:
        outcome = self._cache.get(digest)
        if outcome is None:
            return None
        if outcome.expires is not None and outcome.expires <= time.monotonic():
            self._forget(digest)
            return None
        self._cache.move_to_end(digest)
        return outcome

    def _forget(self, digest: str) -> None:
        outcome = self._cache.pop(digest, None)
        if outcome is not None:
            self._cached_bytes -= outcome.size

    def _remember(self, digest: str, outcome: _Outcome) -> None:
        if outcome.size > self._cache_bytes:
            return
        self._forget(digest)
        self._cache[digest] = outcome
        self._cached_bytes += outcome.size
        while len(self._cache) > self._cache_entries or self._cached_bytes > self._cache_bytes:
            self._forget(next(iter(self._cache)))

    async def _rehearse_uncached(
        self,
        digest: str,
        template: SecretTemplate,
        buckets: tuple[str, ...],
        prefixes: tuple[str, ...],
        providers: tuple[str, ...],
    ) -> _Outcome:
        request = {
            "op": "rehearse",
            "keys": [_key_to_wire(placeholder_material(p, buckets, prefixes)) for p in providers],
            "template": _template_to_wire(template),
        }
        try:
            data = await self._request(request)
        except TemplateError as error:
            message = str(error)
            killed = isinstance(error, _StoppedAtLimit)
            expires = time.monotonic() + self._kill_retry_seconds if killed else None
            outcome = _Outcome(None, (message, error.reason, error.secret_key), expires, len(message) + 256)
        else:
            size = sum(len(k) + len(v) for k, v in data.items()) + 256
            outcome = _Outcome(data, None, None, size)
        self._remember(digest, outcome)
        return outcome

    # -- talking to workers ---------------------------------------------------------------------

    async def _request(self, request: Mapping[str, Any]) -> dict[str, str]:
        if self._closed:
            raise RenderWorkerError("the renderer is closed")
        frame = _encode(request)
        async with self._slots:
            self.requests += 1
            worker = self._idle.pop() if self._idle else None
            if worker is not None and worker.process.returncode is not None:
                worker = None  # died while idle (OOM killer, …); its reaper is already waiting
            if worker is None:
                worker = await self._spawn()
            current: list[str | None] = [None]  # the data key the worker said it was on
            keep = False
            try:
                reply = await self._exchange(worker, frame, current)
                worker.served += 1
                keep = reply.get("healthy") is True and worker.served < self._renders_per_worker
            except _WorkerStopped as stopped:
                self.killed += 1
                what = "time limit" if stopped.timed_out else "memory or time limit"
                error = limit_error(current[0], f"rendering exceeded the {what} and was stopped")
                raise _StoppedAtLimit(str(error), reason=error.reason, secret_key=error.secret_key) from None
            finally:
                if keep and not self._closed:
                    self._idle.append(worker)
                else:
                    self._stop(worker, kill=not keep)
        if "error" in reply:
            raise _error_from_wire(reply["error"])
        data = reply.get("ok")
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise RenderWorkerError("the render worker sent a malformed reply")
        return data

    async def _exchange(self, worker: _Worker, frame: bytes, current: list[str | None]) -> dict[str, Any]:
        process = worker.process
        assert process.stdin is not None and process.stdout is not None
        try:
            async with asyncio.timeout(self.wall_seconds):
                process.stdin.write(frame)
                await process.stdin.drain()
                while True:
                    message = await _read_reply(process.stdout)
                    if "progress" in message:
                        current[0] = str(message["progress"])
                        continue
                    return message
        except TimeoutError:
            raise _WorkerStopped(timed_out=True) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            # EOF (killed by SIGXCPU, SIGKILL, or a crash at the memory limit) or a bad frame.
            raise _WorkerStopped(timed_out=False) from None

    async def _spawn(self) -> _Worker:
        command = [
            sys.executable,
            "-I",  # ignore PYTHON* variables, the user site and the working directory
            "-c",
            "import sys; sys.path.insert(0, sys.argv.pop(1)); from storage_token.secrets.worker import main; main()",
            str(Path(__file__).resolve().parents[2]),  # the directory holding the storage_token package
            "--memory",
            str(self.memory_bytes),
            "--cpu",
            str(self.cpu_seconds),
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # a crashing worker's text stays out of the operator's logs
            env={"LC_ALL": "C.UTF-8"},  # nothing of the operator's environment (tokens, kubeconfig, …)
            cwd="/",
            start_new_session=True,  # a signal to the operator's process group doesn't hit workers mid-render
        )
        worker = _Worker(process)
        self.started += 1
        try:
            assert process.stdout is not None
            async with asyncio.timeout(self._startup_seconds):
                ready = await _read_reply(process.stdout)
            if not ready.get("ready"):
                raise ValueError("unexpected first message")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as error:
            self._stop(worker, kill=True)
            raise RenderWorkerError(f"the render worker did not start ({type(error).__name__})") from None
        return worker

    def _stop(self, worker: _Worker, *, kill: bool) -> None:
        """Stop a worker without waiting (safe while being cancelled); reaped in the background."""
        process = worker.process
        if kill:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        elif process.stdin is not None:
            process.stdin.close()  # the worker exits at EOF
        task = asyncio.get_running_loop().create_task(_reap(process))
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)


async def _read_reply(stream: asyncio.StreamReader) -> dict[str, Any]:
    (length,) = _HEADER.unpack(await stream.readexactly(_HEADER.size))
    if length > _MAX_FRAME:
        raise ValueError("reply too large")
    message = json.loads(await stream.readexactly(length))
    if not isinstance(message, dict):
        raise ValueError("reply is not an object")
    return message


async def _reap(process: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(process.wait(), timeout=5)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _digest(
    template: SecretTemplate, buckets: tuple[str, ...], prefixes: tuple[str, ...], providers: tuple[str, ...]
) -> str:
    material = json.dumps(
        [_template_to_wire(template), list(buckets), list(prefixes), list(providers)],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("ascii")).hexdigest()


if __name__ == "__main__":
    main()
