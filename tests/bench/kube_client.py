"""The Kubernetes client the operator uses, measured against the one it replaced, on a fresh local
control plane: `python tests/bench/kube_client.py [--tokens 1000] [--in-flight 32]`.

Both clients replay the same request mix an issuance makes (GET the Secret, POST it, PATCH the
token's status twice, POST an event) for N tokens with the same concurrency, on the same API
server, one after the other (twice each, alternating; the better run counts):

sync    the official client's synchronous API in a 32-thread pool (the operator until this change)
httpx   the same requests with httpx's AsyncClient on the event loop (the first candidate)
async   `storage_token.kube.api.Kube`: aiohttp on the event loop, a timeout on every request

Reported: requests/s, this process's CPU seconds per 1,000 requests (the client's own cost, the
number that matters on a shared 2-core machine), and p99 request latency. Writes
tests/bench/results/kube-client.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from storage_token.api.token import API_GROUP, API_VERSION
from storage_token.dev.cluster.controlplane import LocalControlPlane
from storage_token.kube.api import Kube, load_api_client
from storage_token.kube.client import _ssl_context

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "bench"
CRDS = Path(__file__).resolve().parents[2] / "crds"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def token(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "StorageToken",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"providerRef": {"name": "p"}, "permissions": ["read"], "buckets": ["b"]},
    }


def secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": {"accessKeyId": name}}


def event(name: str) -> dict[str, Any]:
    return {
        "metadata": {"generateName": f"{name}."},
        "involvedObject": {"kind": "StorageToken", "namespace": NAMESPACE, "name": name},
        "reason": "Issued",
        "message": "bench",
        "type": "Normal",
    }


class Sync:
    """The previous `Kube`: the official synchronous client, raw JSON, in a thread pool."""

    def __init__(self, api: client.ApiClient, workers: int = 32) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            try:
                response = function(*args, _preload_content=False)
                return json.loads(response.data or b"{}")
            except client.ApiException as error:
                if error.status == 404:
                    return None
                raise

        return await asyncio.get_running_loop().run_in_executor(self.pool, run)

    async def issuance(self, name: str, suffix: str) -> None:
        await self.call(self.core.read_namespaced_secret, f"{name}-{suffix}", NAMESPACE)
        await self.call(self.core.create_namespaced_secret, NAMESPACE, secret(f"{name}-{suffix}"))
        for revision in (1, 2):
            patch = {"status": {"revision": revision}}
            await self.call(
                self.custom.patch_namespaced_custom_object_status,
                API_GROUP,
                API_VERSION,
                NAMESPACE,
                "storagetokens",
                name,
                patch,
            )
        await self.call(self.core.create_namespaced_event, NAMESPACE, event(name))


class Httpx:
    """httpx with the same credentials: what the operator would cost on it."""

    def __init__(self, configuration: client.Configuration) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=configuration.host,
            verify=_ssl_context(configuration),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            timeout=30,
        )

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None, kind: str = "json") -> None:
        headers = {"Content-Type": f"application/{kind}"} if body is not None else {}
        content = json.dumps(body).encode() if body is not None else None
        (await self.client.request(method, path, content=content, headers=headers)).json()

    async def issuance(self, name: str, suffix: str) -> None:
        secrets = f"/api/v1/namespaces/{NAMESPACE}/secrets"
        await self.send("GET", f"{secrets}/{name}-{suffix}")
        await self.send("POST", secrets, secret(f"{name}-{suffix}"))
        for revision in (1, 2):
            path = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{NAMESPACE}/storagetokens/{name}/status"
            await self.send("PATCH", path, {"status": {"revision": revision}}, "merge-patch+json")
        await self.send("POST", f"/api/v1/namespaces/{NAMESPACE}/events", event(name))


class Async:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def issuance(self, name: str, suffix: str) -> None:
        await self.kube.get_secret(NAMESPACE, f"{name}-{suffix}")
        await self.kube.create_secret(NAMESPACE, secret(f"{name}-{suffix}"))
        for revision in (1, 2):
            await self.kube.patch_status("StorageToken", NAMESPACE, name, {"status": {"revision": revision}})
        await self.kube.create_event(NAMESPACE, event(name))


async def measure(
    issuance: Callable[[str, str], Awaitable[None]], names: list[str], suffix: str, in_flight: int
) -> dict[str, float]:
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def one(name: str) -> None:
        async with gate:
            started = time.perf_counter()
            await issuance(name, suffix)
            latencies.append((time.perf_counter() - started) / 5)

    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one(name) for name in names))
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    requests = 5 * len(names)
    latencies.sort()
    return {
        "requests_per_s": requests / wall,
        "cpu_s_per_1000_requests": 1000 * cpu / requests,
        "p99_request_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def run(tokens: int, in_flight: int) -> dict[str, Any]:
    with LocalControlPlane() as plane:
        api = load_api_client(str(plane.access.kubeconfig))
        extensions = client.ApiextensionsV1Api(api)
        import yaml

        for path in sorted(CRDS.glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        time.sleep(2)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        custom = client.CustomObjectsApi(api)
        names = [f"t{index:05d}" for index in range(tokens)]
        for name in names:
            custom.create_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE, "storagetokens", token(name))
        runs: dict[str, list[dict[str, float]]] = {"sync": [], "httpx": [], "async": []}
        sync, kube, plain = Sync(api), Kube(api), Httpx(api.configuration)
        for round_ in range(2):
            runs["sync"].append(await measure(sync.issuance, names, f"s{round_}", in_flight))
            runs["httpx"].append(await measure(plain.issuance, names, f"h{round_}", in_flight))
            runs["async"].append(await measure(Async(kube).issuance, names, f"a{round_}", in_flight))
        await kube.aclose()
        await plain.client.aclose()
        sync.pool.shutdown()
    best = {kind: max(results, key=lambda r: r["requests_per_s"]) for kind, results in runs.items()}
    return {"tokens": tokens, "in_flight": in_flight, "requests": 5 * tokens, "best": best, "runs": runs}


def table(result: dict[str, Any]) -> str:
    best = result["best"]
    rows = [
        ("requests/s", "requests_per_s", "{:.0f}"),
        ("client CPU s per 1,000 requests", "cpu_s_per_1000_requests", "{:.2f}"),
        ("p99 request latency (ms)", "p99_request_ms", "{:.0f}"),
    ]
    lines = [
        "# Kubernetes client: the official client in threads, httpx, aiohttp "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"{result['tokens']} tokens x 5 requests (GET Secret, POST Secret, 2 x PATCH status, POST event), "
        f"{result['in_flight']} issuances in flight, fresh local control plane, better of two alternating runs.",
        "",
        "| metric | official client, 32 threads (before) | httpx | aiohttp (`Kube`, after) | after / before |",
        "|---|---|---|---|---|",
    ]
    for label, key, fmt in rows:
        old, other, new = best["sync"][key], best["httpx"][key], best["async"][key]
        lines.append(f"| {label} | {fmt.format(old)} | {fmt.format(other)} | {fmt.format(new)} | {new / old:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.tokens, args.in_flight))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kube-client.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "kube-client.md").write_text(table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
