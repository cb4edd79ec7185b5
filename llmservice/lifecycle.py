"""Start-up and graceful shutdown: SIGTERM/SIGINT and auto-shutdown drain the same way.

uvicorn already stops gracefully on SIGTERM: it closes its listening sockets, lets open
connections finish (up to `--timeout-graceful-shutdown`), then sends the ASGI lifespan
`shutdown` event. This module adds what it cannot know, in front of and after that:

1. Drain (ours): `/ready` answers 503 and new API requests get a 503 `server_shutting_down`
   while the requests in flight finish; after SHUTDOWN_GRACE_SECONDS the generations still
   running are stopped (streams end with an in-band error and are not cached).
2. Hand-over: uvicorn's own shutdown. For a signal, uvicorn's handler runs now (so its exit
   code is what uvicorn gives a signal); for auto-shutdown, `Server.should_exit` is set and
   the process exits 0.
3. Lifespan shutdown (ours): models unloaded, cache writes still in progress waited for.

Everything here runs on the event loop, started by the lifespan `startup` event; without the
lifespan protocol (`--lifespan off`) the server only has uvicorn's own handling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any, Callable

from django.conf import settings

from .activity import run_when_idle, server_activity
from .errors import ServerShuttingDown

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "The server is shutting down and accepts no new requests; retry shortly."
GENERATION_STOPPED = "The server is shutting down: this generation was stopped at the end of the grace period."
AUTO_SHUTDOWN_REASON = "auto-shutdown after {minutes:g} minute(s) without API requests (AUTO_SHUTDOWN_MINUTES)"
ABORT_WAIT_SECONDS = 10.0  # after the grace period: stopped generations end within a token
UNLOAD_WAIT_SECONDS = 30.0
CACHE_WRITE_WAIT_SECONDS = 30.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Lifecycle:
    """The process's serving state: "serving", "draining" (refusing new work), "stopped"."""

    def __init__(self) -> None:
        self.state = "serving"
        self.reason: str | None = None
        self.managed = False  # the lifespan startup ran: drain and auto-shutdown are active
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None  # the uvicorn.Server running us, when there is one
        self._server_handlers: dict[int, Callable] = {}
        self._handed_over = False
        self._tasks: set[asyncio.Task] = set()

    @property
    def accepting(self) -> bool:
        return self.state == "serving"

    # --- lifespan ---------------------------------------------------------------------------
    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.managed = True
        self._chain_signal_handlers()
        minutes = settings.AUTO_SHUTDOWN_MINUTES
        if minutes > 0:
            server_activity.restart_idle_clock()
            self._spawn(run_when_idle(server_activity, minutes * 60, self._auto_shutdown))
            logger.info("Auto-shutdown after %g minute(s) without API requests", minutes)

    async def shutdown(self) -> None:
        """The lifespan `shutdown` event: uvicorn has closed its connections. Unload, flush, log."""
        from inference.manager import get_manager
        from openai_api.cache import cache_writes_wait

        for task in list(self._tasks):
            task.cancel()
        self.state = "stopped"
        try:
            names = await asyncio.to_thread(get_manager().unload_all, wait=True, timeout=UNLOAD_WAIT_SECONDS)
        except TimeoutError as exc:
            names = []
            logger.error("%s Exiting without waiting for it.", exc)
        upstream = sys.modules.get("openai_api.remote.upstream")  # remote tiers' pools, if any was used
        if upstream is not None:
            await upstream.close_pools()
        if not await asyncio.to_thread(cache_writes_wait, CACHE_WRITE_WAIT_SECONDS):
            logger.error("Cache writes still running after %gs; exiting without them", CACHE_WRITE_WAIT_SECONDS)
        unloaded = ", ".join(names) if names else "no model was loaded"
        logger.info("Stopped, %s; unloaded: %s", self.reason or "the server was asked to stop", unloaded)

    # --- draining ---------------------------------------------------------------------------
    def begin_drain(self, reason: str, handover: Callable[[], None]) -> None:
        """Stop taking API requests, let those in flight finish (SHUTDOWN_GRACE_SECONDS), then `handover`."""
        if self.state != "serving":
            return
        self.state, self.reason = "draining", reason
        logger.warning(
            "Shutting down, %s: %d request(s) in flight, grace period %gs",
            reason,
            server_activity.in_flight,
            settings.SHUTDOWN_GRACE_SECONDS,
        )
        self._spawn(self._drain(handover))

    async def _drain(self, handover: Callable[[], None]) -> None:
        from inference.manager import get_manager

        if not await server_activity.wait_idle(settings.SHUTDOWN_GRACE_SECONDS):
            stopped = get_manager().abort_all(ServerShuttingDown(GENERATION_STOPPED))
            logger.warning(
                "Grace period over (SHUTDOWN_GRACE_SECONDS=%g): stopping %d generation(s)",
                settings.SHUTDOWN_GRACE_SECONDS,
                stopped,
            )
            await server_activity.wait_idle(ABORT_WAIT_SECONDS)
        handover()

    async def _auto_shutdown(self) -> None:
        self.begin_drain(AUTO_SHUTDOWN_REASON.format(minutes=settings.AUTO_SHUTDOWN_MINUTES), self._stop_server)

    def _stop_server(self) -> None:
        """uvicorn's documented way to stop a server it runs: exit 0 after its graceful shutdown."""
        self._handed_over = True
        if self._server is not None:
            self._server.should_exit = True
        else:  # another ASGI server: its own SIGTERM handling takes over from here
            os.kill(os.getpid(), signal.SIGTERM)

    # --- signals ----------------------------------------------------------------------------
    def _chain_signal_handlers(self) -> None:
        """Run our drain before uvicorn's handler: find uvicorn's handler (a bound method of its
        Server) and put ours in front of it. uvicorn restores the pre-server handlers at exit."""
        try:
            from uvicorn import Server
        except ImportError:  # pragma: no cover - uvicorn is a runtime dependency
            return
        for sig in SIGNALS:
            try:
                current = signal.getsignal(sig)
            except ValueError:  # pragma: no cover - not the main thread
                return
            server = getattr(current, "__self__", None)
            if not isinstance(server, Server):
                continue
            self._server = server
            self._server_handlers[sig] = current
            try:
                signal.signal(sig, self._on_signal)
            except ValueError:  # pragma: no cover - not the main thread
                return

    def _on_signal(self, sig: int, frame) -> None:
        forward = self._server_handlers[sig]
        if self.state != "serving" or self._loop is None:
            # A second signal goes straight to uvicorn (its repeated Ctrl+C forces the exit).
            self._handed_over = True
            forward(sig, frame)
            return

        def handover() -> None:
            if not self._handed_over:
                self._handed_over = True
                forward(sig, frame)

        name = signal.Signals(sig).name
        self._loop.call_soon_threadsafe(self.begin_drain, f"received {name}", handover)

    # --- reporting --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What /health, /internal/status and `manage.py status` show."""
        minutes = settings.AUTO_SHUTDOWN_MINUTES
        left = server_activity.seconds_left(minutes * 60) if self.managed and self.state == "serving" else None
        return {
            "state": self.state,
            "reason": self.reason,
            "in_flight": server_activity.in_flight,
            "idle_seconds": round(server_activity.idle_seconds(), 1),
            "auto_shutdown_minutes": minutes if minutes > 0 else None,
            "shutdown_in_seconds": round(left, 1) if left is not None else None,
        }

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


lifecycle = Lifecycle()


async def lifespan_application(scope, receive, send) -> None:
    """The ASGI lifespan protocol: https://asgi.readthedocs.io/en/latest/specs/lifespan.html"""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await lifecycle.startup()
            except Exception as exc:  # pragma: no cover - reported to the server, which exits
                logger.exception("Start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            try:
                await lifecycle.shutdown()
            except Exception as exc:  # pragma: no cover
                logger.exception("Shutdown failed")
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.shutdown.complete"})
            return
