"""A two-way index: which values each key names, and which keys name a value, kept in step."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


class Index(Generic[K, V]):
    """E.g. token -> the Secret name it writes, or token -> the workloads its rollout follows; an event
    about a value then finds its keys without a scan of every key."""

    def __init__(self) -> None:
        self._values: dict[K, frozenset[V]] = {}
        self._keys: dict[V, set[K]] = {}

    def set(self, key: K, values: Iterable[V]) -> None:
        """`key` names exactly `values` from now on (none: it is forgotten)."""
        wanted = frozenset(values)
        previous = self._values.get(key, frozenset())
        if wanted == previous:
            return
        for value in previous - wanted:
            holders = self._keys.get(value, set())
            holders.discard(key)
            if not holders:
                self._keys.pop(value, None)
        for value in wanted - previous:
            self._keys.setdefault(value, set()).add(key)
        if wanted:
            self._values[key] = wanted
        else:
            self._values.pop(key, None)

    def keys_of(self, value: V) -> list[K]:
        """The keys naming `value`, as a list the caller may hold while the index changes."""
        return list(self._keys.get(value, ()))
