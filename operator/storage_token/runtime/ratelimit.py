"""A token bucket per provider account, shared fairly between the namespaces that wait on it.

The bucket spreads a renewal storm out instead of tripping the provider. Who gets the next
call is not first come, first served: callers wait in lanes (one per namespace), lanes take
turns, one call each (round robin), and within a lane the call whose key expires soonest goes
first. So a namespace with hundreds of due tokens, or one minting keys in a loop, gets its
share of the budget and no more: another namespace's call waits for at most one call per
other waiting lane once it is the most urgent of its own.

Which lane and deadline a call belongs to travels in a context variable (`claiming`), set by
whoever starts the work (the Manager, around a token's reconcile), so the provider code in
between needs no extra arguments. Work outside any claim (sweeps, credential checks) shares
the lane "".
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

SYSTEM_LANE = ""  # sweeps and provider checks
_EPSILON = 1e-9  # a refill that rounds to 0.9999… is a whole call (else it would sleep 1e-17 s forever)

_CLAIM: ContextVar[tuple[str, float]] = ContextVar("provider_claim", default=(SYSTEM_LANE, math.inf))


@contextlib.contextmanager
def claiming(lane: str, deadline: float) -> Iterator[None]:
    """Provider calls made inside count against `lane` and are ordered by `deadline` (epoch seconds)."""
    token = _CLAIM.set((lane, deadline))
    try:
        yield
    finally:
        _CLAIM.reset(token)


def current_claim() -> tuple[str, float]:
    return _CLAIM.get()


@dataclass(order=True)
class _Waiter:
    deadline: float
    sequence: int
    granted: asyncio.Future[None] = field(compare=False)


class TokenBucket:
    """`rate` calls per second sustained, `burst` at once, granted fairly between lanes.

    `acquire(lane, deadline)` returns how long it waited. Without arguments it uses the
    current claim (see `claiming`).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)) or burst < 1:
            raise ValueError("rate must be > 0 and finite, and burst >= 1")
        self.rate, self.burst = rate, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lanes: dict[str, list[_Waiter]] = {}  # lane -> heap of waiters, soonest deadline first
        self._turns: deque[str] = deque()  # lanes with waiters, in the order they are served
        self._sequence = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + max(now - self._updated, 0.0) * self.rate)
        self._updated = now

    def waiting(self) -> dict[str, int]:
        """Waiters per lane (for tests and debugging)."""
        return {lane: sum(not w.granted.done() for w in heap) for lane, heap in self._lanes.items()}

    async def acquire(self, lane: str | None = None, deadline: float | None = None) -> float:
        claim_lane, claim_deadline = current_claim()
        lane = claim_lane if lane is None else lane
        deadline = claim_deadline if deadline is None else deadline
        self._refill()
        if not self._turns and self._tokens >= 1 - _EPSILON:
            self._tokens = max(self._tokens - 1, 0.0)  # nobody waits: no queueing, no task
            return 0.0
        started = self._clock()
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heap = self._lanes.get(lane)
        if heap is None:
            heap = self._lanes[lane] = []
            self._turns.append(lane)
        heapq.heappush(heap, _Waiter(deadline, next(self._sequence), granted))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="rate-limit-dispatch")
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._tokens = min(self.burst, self._tokens + 1)  # granted, then cancelled: give it back
            raise
        return self._clock() - started

    def _next_waiter(self) -> _Waiter | None:
        """The waiter whose turn it is: the head of the next lane in turn (cancelled ones dropped)."""
        while self._turns:
            lane = self._turns.popleft()
            heap = self._lanes[lane]
            while heap and heap[0].granted.done():
                heapq.heappop(heap)  # cancelled while waiting
            if not heap:
                del self._lanes[lane]
                continue
            waiter = heapq.heappop(heap)
            while heap and heap[0].granted.done():
                heapq.heappop(heap)
            if heap:
                self._turns.append(lane)  # back of the line: every other lane goes first
            else:
                del self._lanes[lane]
            return waiter
        return None

    async def _dispatch(self) -> None:
        while self._turns:
            self._refill()
            if self._tokens < 1 - _EPSILON:
                await self._sleep((1 - self._tokens) / self.rate)
                continue
            waiter = self._next_waiter()
            if waiter is None:
                break
            self._tokens = max(self._tokens - 1, 0.0)
            waiter.granted.set_result(None)
            await asyncio.sleep(0)  # let the granted caller run before the next grant
