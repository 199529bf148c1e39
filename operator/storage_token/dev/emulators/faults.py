"""Faults an emulator injects into matching calls, switchable per test.

A `Fault` names what happens (`latency`, `status` = an HTTP error without
applying the call, `retcode` = a US3 RetCode error, `lose_response` = apply
the call then drop the connection without answering, `timeout` = apply
nothing and answer only after `latency` seconds), which calls it hits (None
= all), how many times (None = until cleared) and with what probability.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["latency", "status", "retcode", "lose_response", "timeout"]


@dataclass
class Fault:
    kind: FaultKind
    calls: frozenset[str] | None = None  # action / call names; None hits every call
    times: int | None = 1  # remaining hits; None = unlimited
    probability: float = 1.0
    status: int = 503
    retry_after: float | None = None  # seconds, sent as Retry-After with `status`
    retcode: int = 150
    latency: float = 0.0  # seconds, for `latency` and `timeout`
    hits: int = field(default=0, init=False)

    def matches(self, call: str) -> bool:
        return self.calls is None or call in self.calls


class FaultInjector:
    """Thread-safe list of active faults; `draw(call)` consumes matching ones."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def inject(self, kind: FaultKind, calls: str | list[str] | None = None, **kwargs: object) -> Fault:
        """Shorthand: `inject("status", "b2_create_key", status=503, times=2)`."""
        names = None if calls is None else frozenset([calls] if isinstance(calls, str) else calls)
        return self.add(Fault(kind=kind, calls=names, **kwargs))  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def draw(self, call: str) -> list[Fault]:
        """Faults that fire on this call (latency first), consuming their counts."""
        fired: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(call):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                fault.hits += 1
                fired.append(fault)
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        fired.sort(key=lambda f: f.kind != "latency")
        return fired
