"""Per-key rate limits (requests and tokens per minute) behind one small interface.

`InProcessRateLimiter` counts in this process's memory (one server process owns the models, so
that is every request). A shared store (Redis) can implement the same three methods; the class
is chosen by the RATE_LIMITER setting (a dotted path).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class RateLimiter(Protocol):
    """Sliding-window counters keyed by a string (e.g. "rpm:<key id>"). Amounts are whole units."""

    async def acquire(self, key: str, *, limit: int, window: float, amount: int = 1) -> float:
        """Count `amount` now if that keeps `key` within `limit` over the last `window` seconds:
        then 0.0. Otherwise count nothing and return the seconds until it would fit."""
        ...

    async def wait_time(self, key: str, *, limit: int, window: float) -> float:
        """Seconds until `key` is under `limit` again (0.0: it is now). Counts nothing."""
        ...

    async def record(self, key: str, *, amount: int, window: float) -> None:
        """Count `amount` now, whatever the limit (usage known only afterwards, such as tokens)."""
        ...


class InProcessRateLimiter:
    """A sliding window log per key: (time, amount) entries younger than the window."""

    def __init__(self) -> None:
        self._log: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def _entries(self, key: str, window: float, now: float) -> deque[tuple[float, int]]:
        log = self._log.setdefault(key, deque())
        while log and log[0][0] <= now - window:
            log.popleft()
        return log

    def _wait(self, log: deque[tuple[float, int]], *, limit: int, window: float, amount: int, now: float) -> float:
        """Seconds until the logged amounts plus `amount` fit in `limit` (0.0: they do now)."""
        used = sum(a for _, a in log)
        if used + amount <= limit:
            return 0.0
        for at, logged in log:  # oldest first: wait until enough of it has left the window
            used -= logged
            if used + amount <= limit:
                return max(0.0, at + window - now)
        return window  # `amount` alone exceeds the limit: no wait makes it fit

    async def acquire(self, key: str, *, limit: int, window: float, amount: int = 1) -> float:
        now = time.monotonic()
        with self._lock:
            log = self._entries(key, window, now)
            wait = self._wait(log, limit=limit, window=window, amount=amount, now=now)
            if wait == 0.0:
                log.append((now, amount))
            return wait

    async def wait_time(self, key: str, *, limit: int, window: float) -> float:
        now = time.monotonic()
        with self._lock:
            log = self._entries(key, window, now)
            return self._wait(log, limit=max(0, limit - 1), window=window, amount=0, now=now)

    async def record(self, key: str, *, amount: int, window: float) -> None:
        if amount <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._entries(key, window, now).append((now, amount))


_limiter: RateLimiter | None = None
_limiter_lock = threading.Lock()


def get_rate_limiter() -> RateLimiter:
    """The process's limiter: an instance of the RATE_LIMITER class, made on first use."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = import_string(settings.RATE_LIMITER)()
        return _limiter
