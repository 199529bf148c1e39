"""May a token in a namespace use a provider? Namespaced providers: same namespace only.

ClusterStorageProviders: the namespace is named in `namespaces` or matches `namespaceSelector`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage_token.api.provider import CLUSTER_KIND, NamespaceRule, ProviderSpec


def _requirement_holds(labels: Mapping[str, str], requirement: Mapping[str, Any]) -> bool:
    key, operator = requirement.get("key", ""), requirement.get("operator", "")
    values = requirement.get("values") or ()
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def selector_matches(rule: NamespaceRule, labels: Mapping[str, str]) -> bool:
    if not rule.has_selector:
        return False
    if any(labels.get(k) != v for k, v in rule.match_labels.items()):
        return False
    return all(_requirement_holds(labels, r) for r in rule.match_expressions)


def namespace_admitted(provider: ProviderSpec, namespace: str, namespace_labels: Mapping[str, str]) -> str:
    """ "" when the token's namespace may use `provider`, else a message saying why not."""
    if provider.kind != CLUSTER_KIND:
        if provider.namespace != namespace:
            return f"StorageProvider {provider.namespace}/{provider.name} is in another namespace"
        return ""
    rule = provider.namespaces or NamespaceRule()
    if namespace in rule.names or selector_matches(rule, namespace_labels):
        return ""
    return f"ClusterStorageProvider {provider.name!r} does not admit namespace {namespace!r}"
