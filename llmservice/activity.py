"""Work in flight and idle time: what auto-shutdown (and, per tier, idle unload) decide on.

One `Activity` counts the units of work running now and remembers when the last one ended. The
server has one for its API requests (`server_activity`, fed by openai_api/access_log.py); an idle
unload per tier can keep one per tier and reuse `seconds_left` and `run_when_idle` unchanged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Awaitable, Callable


class Activity:
    """In-flight count and last end time (time.monotonic). Thread-safe: owner threads may feed one."""

    __slots__ = ("_lock", "in_flight", "last_end", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.last_end = time.monotonic()  # a fresh server counts as idle since it started
        self.total = 0

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.total += 1

    def end(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_end = time.monotonic()

    def restart_idle_clock(self) -> None:
        """Count idleness from now (the server has just started serving)."""
        with self._lock:
            self.last_end = time.monotonic()

    def idle_seconds(self, now: float | None = None) -> float:
        """How long nothing has been in flight; 0 while something is."""
        if self.in_flight:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self.last_end)

    def seconds_left(self, timeout: float) -> float | None:
        """Seconds until `timeout` of idleness is reached: `timeout` while busy (the countdown
        starts when the last piece of work ends), None when `timeout` is 0 (off)."""
        if timeout <= 0:
            return None
        return max(0.0, timeout - self.idle_seconds())

    async def wait_idle(self, timeout: float, poll: float = 0.05) -> bool:
        """Wait until nothing is in flight (at most `timeout` seconds); whether that happened."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)
        return True


async def run_when_idle(activity: Activity, timeout: float, action: Callable[[], Awaitable[None]]) -> None:
    """Call `action` once `activity` has been idle for `timeout` seconds (re-armed by any new work).

    Each sleep lasts until the earliest moment the deadline can be reached: while work is in
    flight that is a whole `timeout` away, since the countdown starts when the work ends."""
    while True:
        if activity.in_flight:
            await asyncio.sleep(timeout)
            continue
        left = timeout - activity.idle_seconds()
        if left <= 0:
            await action()
            return
        await asyncio.sleep(left)


server_activity = Activity()
