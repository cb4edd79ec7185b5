"""The ASGI handler of the API paths: Django's, without a thread per request.

Django's `ASGIHandler` runs each request in a `ThreadSensitiveContext` and sends the
`request_started` and `request_finished` signals, and closes the response, through
`sync_to_async`. The first such hop of a request starts a worker thread for that request, and
leaving the context starts another to join it: measured here, about 2-4 ms of a request that
otherwise costs 2-3 ms (bench/profile_request.py). The API's hot path touches no database
(registry/tier_snapshot.py), so nothing needs that thread:

- both signals are sent on the event loop. Django's receivers (`reset_queries`,
  `close_old_connections`, `close_caches`, `reset_urlconf`) only touch what the calling thread
  holds, and the loop thread holds no database connection (Django refuses ORM calls there);
- a request whose code did run thread-sensitive sync code (API keys, cache writes, stored
  responses) still gets its own worker thread from the context, as under Django's handler, and
  that thread's database connections are closed in it before the context ends.

Everything else is Django's `handle()` (5.2) as is: the body, the disconnect watch that cancels
the view, the error responses.

The hot operations (`LEAN_OPERATIONS`: POST on /v1/chat/completions, /v1/completions,
/v1/responses, /v1/embeddings, /v1/rerank) take a shorter way still: their django-ninja view is
called directly (its auth, body parsing, validation and error handlers run as on every other
path), without URL resolving, the middleware chain, or the two request signals and their
receivers. Django's own receivers have nothing to do there: the loop thread holds no database
connection, the cache backends' `close()` are no-ops, and there is no per-request urlconf to
reset. Measured in-process, the handler then costs about 130 us per request instead of 300.
A response is still closed (its resource closers run) once it is sent or abandoned.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.urls import resolve, set_script_prefix
from django.utils.log import log_response

# (method, path) of the operations served without Django's request machinery (see above).
LEAN_OPERATIONS = frozenset(
    ("POST", path)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/rerank")
)


class APIHandler(ASGIHandler):
    """Django's ASGI handler with settings.API_MIDDLEWARE and no per-request thread hops."""

    def load_middleware(self, is_async=False):
        """Django builds the chain from settings.MIDDLEWARE only, so it is swapped for the build;
        this runs once, at import, before any request."""
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        context = ThreadSensitiveContext()
        async with context:
            try:
                await self.handle(scope, receive, send)
            finally:
                if context in SyncToAsync.context_to_thread_executor:  # sync code ran for this request
                    await sync_to_async(close_old_connections)()  # in its thread, where its connections are

    def __init__(self):
        super().__init__()
        self._lean_views: dict[str, object] = {}  # path -> its ninja view, resolved once

    def lean_view(self, scope):
        """The ninja view serving this request on the lean way, or None."""
        path = scope["path"]
        if (scope["method"], path) not in LEAN_OPERATIONS or scope.get("root_path"):
            return None
        view = self._lean_views.get(path)
        if view is None:
            view = self._lean_views[path] = resolve(path).func
        return view

    async def run_lean(self, view, request):
        """As `run_get_response` does through the middleware chain, for one ninja view."""
        response = await view(request)
        response._handler_class = self.__class__
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        return response

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        view = self.lean_view(scope)
        if view is None:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request, send):
            response = await (self.run_get_response(request) if view is None else self.run_lean(view, request))
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected during send_response
            return response

        # The disconnect watch goes first: it must not raise anything that would keep
        # process_request from being cancelled.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass  # the client disconnected
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()  # views may handle cancellation
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            if view is None:
                signals.request_finished.send(sender=self.__class__)
        else:
            if view is None:
                response.close()  # sends request_finished
            else:
                close_quietly(response)
        body_file.close()


def close_quietly(response) -> None:
    """`response.close()` without the request_finished signal: its resource closers (the
    request's, and `on_response_close` callbacks) run, errors in them ignored, as Django does."""
    for closer in response._resource_closers:
        try:
            closer()
        except Exception:
            pass
    response._resource_closers.clear()
    response.closed = True
