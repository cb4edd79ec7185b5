"""API key usage and last-used times, buffered in memory and written at most once per
API_KEY_USAGE_FLUSH_SECONDS (default a minute) by a background timer: never per token, and a
request never waits for the database to record it. A crash loses at most that interval."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import date, datetime, timezone

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class UsageBuffer:
    def __init__(self) -> None:
        self._usage: dict[tuple[int, str, date], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._last_used: dict[int, datetime] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._last_flush = 0.0

    def add(self, key_id: int, tier: str, *, requests: int = 0, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        day = datetime.now(timezone.utc).date()
        with self._lock:
            row = self._usage[(key_id, tier, day)]
            row[0] += requests
            row[1] += prompt_tokens
            row[2] += completion_tokens
            self._schedule()

    def touch(self, key_id: int, when: datetime) -> None:
        with self._lock:
            self._last_used[key_id] = when
            self._schedule()

    def _schedule(self) -> None:
        """Called with the lock held: one timer at a time, due a full interval after the last write."""
        if self._timer is not None:
            return
        delay = max(0.0, self._last_flush + settings.API_KEY_USAGE_FLUSH_SECONDS - time.monotonic())
        self._timer = threading.Timer(delay, self._flush_from_timer)
        self._timer.daemon = True
        self._timer.start()

    def _flush_from_timer(self) -> None:
        try:
            self.flush()
        finally:
            close_old_connections()  # this thread's connection is not Django's request-managed one

    def discard(self) -> None:
        """Forget everything buffered, writing nothing (tests start from a clean buffer)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._usage.clear()
            self._last_used.clear()

    def flush(self) -> None:
        """Write what has been buffered (also called directly by tests)."""
        from registry.services import api_key_usage_write

        with self._lock:
            usage, self._usage = self._usage, defaultdict(lambda: [0, 0, 0])
            last_used, self._last_used = self._last_used, {}
            self._timer = None
            self._last_flush = time.monotonic()
        if not usage and not last_used:
            return
        try:
            api_key_usage_write(usage={k: tuple(v) for k, v in usage.items()}, last_used=last_used)
        except Exception:
            logger.exception("Writing API key usage failed; %d rows dropped", len(usage))


usage_buffer = UsageBuffer()
