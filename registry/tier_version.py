"""With REDIS_URL: the tier table's version in Redis, bumped whenever a Tier is saved or deleted in
any instance, so every instance's tier snapshot (tier_snapshot.py) re-reads the table on its next
request after an edit made elsewhere (instead of after TIER_SNAPSHOT_SECONDS). Issue 16."""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_delete, post_save

from llmservice.redis_clients import redis_async, redis_sync, tolerated

from .models import Tier

VERSION_KEY = "llmservice:tiers:version"


def tier_version_bump(**_: object) -> None:
    """A tier changed here: every instance's snapshot is stale from now."""
    if not settings.REDIS_URL:
        return
    with tolerated("announcing a tier edit"):  # down: the others catch up after TIER_SNAPSHOT_SECONDS
        redis_sync().incr(VERSION_KEY)


async def tier_version() -> int | None:
    """The table's version across instances; None without REDIS_URL, or if Redis can't be read
    (the snapshot then falls back to its age)."""
    if not settings.REDIS_URL:
        return None
    with tolerated("reading the tiers' version"):
        return int(await redis_async().get(VERSION_KEY) or 0)
    return None


post_save.connect(tier_version_bump, sender=Tier, dispatch_uid="registry.tier_version.save")
post_delete.connect(tier_version_bump, sender=Tier, dispatch_uid="registry.tier_version.delete")
