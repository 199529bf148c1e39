"""An async HTTP session for the API server, built from the official client's configuration.

The official client reads kubeconfig and in-cluster credentials (certificates, tokens, exec
plugins, token refresh) the same way kopf's login does; its requests are synchronous, so we
keep its `Configuration` and send the requests with aiohttp, the HTTP library kopf's own
watches use, on the event loop: no thread pool, and a timeout on every request.

Why aiohttp and not httpx: measured by tests/bench/kube_client.py on this machine (1,000
issuances' worth of requests, 32 in flight), httpx spent 5.3 ms of CPU per request (its
connection pool scans every connection for every request) against 1.0 ms for the official
client in threads and 0.5 ms for aiohttp. README ("Kubernetes client") has the table.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp
from kubernetes import client, config


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `request` bounds every read or write; a watch waits `watch` for its next line."""

    connect: float = 5.0
    request: float = 30.0
    watch: float = 330.0


DEFAULT_TIMEOUTS = Timeouts()


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig (explicit, then default)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def authorization_header(configuration: client.Configuration) -> str | None:
    """`Bearer <token>` if the credentials are a token (newer clients keep it under BearerToken).

    Asked for on every request, so expiring tokens (projected service account tokens, exec
    plugins) are refreshed by the official client's own hook."""
    identifier = "BearerToken" if "BearerToken" in (configuration.api_key or {}) else "authorization"
    value = configuration.get_api_key_with_prefix(identifier)  # runs the refresh hook once
    return str(value) if value else None


def _ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    if not configuration.verify_ssl:
        return False  # the kubeconfig says insecure-skip-tls-verify: honour it, as kubectl does
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def new_session(configuration: client.Configuration, max_connections: int = 64) -> aiohttp.ClientSession:
    """A connection pool (`max_connections` 0: unlimited); credentials go per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ssl=_ssl_context(configuration)),
        headers={"Accept": "application/json", "User-Agent": "storage-token-operator"},
        raise_for_status=False,
    )
