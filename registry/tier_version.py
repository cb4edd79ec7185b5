"""With REDIS_URL: the tier table's version in Redis, bumped whenever a Tier is saved or deleted in
any instance, so every instance's tier snapshot (tier_snapshot.py) re-reads the table on its next
request after an edit made elsewhere (instead of after TIER_SNAPSHOT_SECONDS). Issue 16."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from llmservice.redis_clients import redis_async, redis_sync

from .models import Tier

logger = logging.getLogger(__name__)

VERSION_KEY = "llmservice:tiers:version"


def tier_version_bump(**_: object) -> None:
    """A tier changed here: every instance's snapshot is stale from now."""
    if not settings.REDIS_URL:
        return
    try:
        redis_sync().incr(VERSION_KEY)
    except Exception as exc:  # noqa: BLE001 - Redis down: the other instances catch up after TIER_SNAPSHOT_SECONDS
        logger.warning("could not announce a tier edit to the other instances: %s", exc)


async def tier_version() -> int | None:
    """The table's version across instances; None without REDIS_URL, or if Redis can't be read
    (the snapshot then falls back to its age)."""
    if not settings.REDIS_URL:
        return None
    try:
        return int(await redis_async().get(VERSION_KEY) or 0)
    except Exception as exc:  # noqa: BLE001
        logger.warning("could not read the tiers' version from Redis: %s", exc)
        return None


post_save.connect(tier_version_bump, sender=Tier, dispatch_uid="registry.tier_version.save")
post_delete.connect(tier_version_bump, sender=Tier, dispatch_uid="registry.tier_version.delete")
