"""One snapshot of the server's state: tiers, loaded models, queues, latency, cache hit rates.

Served to the commands (`GET /internal/status`) and pushed to the live status page.
"""

from __future__ import annotations

import os
from typing import Any

from asgiref.sync import sync_to_async

from inference.manager import get_manager
from inference.status import TierStatus
from llmservice.lifecycle import lifecycle
from registry.selectors import cached_response_stats, tier_alist

from .cache import cache_stats


def _model_bytes(path: str) -> int | None:
    """A loaded GGUF is memory-mapped, so its file size is what it occupies (plus the KV cache)."""
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


def tier_fields(status: TierStatus | None) -> dict[str, Any]:
    """A tier's live status as JSON (a tier with no model loaded: "unloaded", all counts zero)."""
    fields = (status or TierStatus.unloaded("")).as_dict()
    for key in ("name", "backend", "kind"):  # the registry's values are the ones shown
        fields.pop(key)
    return fields


async def status_snapshot() -> dict[str, Any]:
    workers = get_manager().status()
    cache = cache_stats()
    cache["database"] = await sync_to_async(cached_response_stats)()
    tiers = []
    for tier in await tier_alist(enabled_only=False):
        fields = tier_fields(workers.get(tier.name))
        counters = cache["tiers"].get(tier.name, {})
        looked_up = counters.get("hits", 0) + counters.get("misses", 0)
        tiers.append(
            {
                "name": tier.name,
                "backend": tier.backend,
                "kind": tier.kind,
                "enabled": tier.enabled,
                "cache_enabled": tier.cache_enabled,
                "model_file": os.path.basename(tier.model_path.rstrip("/")),
                "memory_bytes": _model_bytes(tier.model_path) if fields["loaded"] else None,
                **fields,
                "cache_hit_rate": round(counters.get("hits", 0) / looked_up, 4) if looked_up else None,
            }
        )
    return {"tiers": tiers, "cache": cache, "server": lifecycle.snapshot()}
