"""Small helpers shared by tests: bounded waits that fail with a message instead of hanging.

Waits are bounded by generous limits so that a busy machine never flakes; the tests assert on
what happened, never on how long it took.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterator

from inference.manager import get_manager

JOIN_TIMEOUT = 60  # seconds an owner thread may take to finish and close its model


def unload_everything() -> None:
    """Unload every model and wait (bounded) until each owner thread has ended."""
    get_manager().unload_all(wait=True, timeout=JOIN_TIMEOUT)


def _polls(what: str, timeout: float) -> Iterator[None]:
    """Yields until `timeout` seconds have passed, then fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        yield
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120, interval: float = 0.02) -> Any:
    """Poll `predicate` until it returns something truthy (which is returned)."""
    for _ in _polls(what, timeout):
        if value := predicate():
            return value
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], Any], what: str, timeout: float = 120, interval: float = 0.01) -> Any:
    """`wait_until` for the event loop."""
    for _ in _polls(what, timeout):
        if value := predicate():
            return value
        await asyncio.sleep(interval)
