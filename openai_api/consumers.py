"""The live status page: an HTML view and the websocket that pushes status snapshots to it.

One publisher task per process sends a snapshot to the `llmservice.status` group every
STATUS_INTERVAL_SECONDS while anyone is watching; the channel layer (in memory, or Redis when
REDIS_URL is set) delivers it to every connected page.
"""

from __future__ import annotations

import asyncio
import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .status import status_snapshot

logger = logging.getLogger(__name__)

GROUP = "llmservice.status"
_watchers = 0
_publisher: asyncio.Task | None = None


@staff_member_required
def status_page(request: HttpRequest) -> HttpResponse:
    """The live status page (staff login required)."""
    return render(request, "status.html", {"title": "Live status"})


async def _publish() -> None:
    layer = get_channel_layer()
    while _watchers > 0:
        try:
            await layer.group_send(GROUP, {"type": "status.update", "snapshot": await status_snapshot()})
        except Exception:  # a failing snapshot must not end the page's updates for good
            logger.exception("Status snapshot failed")
        await asyncio.sleep(settings.STATUS_INTERVAL_SECONDS)


class StatusConsumer(AsyncJsonWebsocketConsumer):
    """Accepts staff users only; sends a snapshot at once, then whatever the publisher sends."""

    watching = False

    async def connect(self) -> None:
        global _watchers, _publisher
        user = self.scope.get("user")
        if not (user and user.is_active and user.is_staff):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send_json(await status_snapshot())
        self.watching = True
        _watchers += 1
        if _publisher is None or _publisher.done():
            _publisher = asyncio.get_running_loop().create_task(_publish())

    async def disconnect(self, code: int) -> None:
        global _watchers
        if self.watching:
            self.watching = False
            _watchers = max(0, _watchers - 1)
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def status_update(self, event: dict) -> None:
        await self.send_json(event["snapshot"])
