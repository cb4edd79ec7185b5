"""One snapshot of the server's state: tiers, loaded models, queues, latency, cache hit rates.

Served to the commands (`GET /internal/status`) and pushed to the live status page.
"""

from __future__ import annotations

import os
from typing import Any

from asgiref.sync import sync_to_async

from inference.manager import WorkerStatus, get_manager
from llmservice.lifecycle import lifecycle
from registry.selectors import cached_response_stats, tier_alist

from .cache import cache_stats


def _model_bytes(path: str) -> int | None:
    """A loaded GGUF is memory-mapped, so its file size is what it occupies (plus the KV cache)."""
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


def worker_fields(status: WorkerStatus | None) -> dict[str, Any]:
    recent = list(status.recent) if status else []
    rates = [r.tokens_per_second for r in recent if r.tokens_per_second]
    return {
        "state": status.state if status else "unloaded",
        "loaded": bool(status and status.state == "ready"),
        "load_seconds": round(status.load_seconds, 3) if status and status.load_seconds is not None else None,
        "requests": status.requests if status else 0,
        "in_flight": status.in_flight if status else 0,
        "queued": status.queued if status else 0,
        "last_used": status.last_used if status else None,
        "error": status.error if status else None,
        "next_retry_at": status.retry_at if status and status.state == "failed" else None,
        "recent_seconds": round(sum(r.seconds for r in recent[-10:]) / len(recent[-10:]), 3) if recent else None,
        "tokens_per_second": round(sum(rates[-10:]) / len(rates[-10:]), 1) if rates else None,
        "history": [round(r.tokens_per_second, 1) for r in recent if r.tokens_per_second][-30:],
        "batches": status.batches if status else None,  # embedding/rerank: batched forward passes run
    }


async def status_snapshot() -> dict[str, Any]:
    workers = get_manager().status()
    cache = cache_stats()
    cache["database"] = await sync_to_async(cached_response_stats)()
    tiers = []
    for tier in await tier_alist(enabled_only=False):
        fields = worker_fields(workers.get(tier.name))
        counters = cache["tiers"].get(tier.name, {})
        looked_up = counters.get("hits", 0) + counters.get("misses", 0)
        tiers.append(
            {
                "name": tier.name,
                "backend": tier.backend,
                "enabled": tier.enabled,
                "cache_enabled": tier.cache_enabled,
                "model_file": os.path.basename(tier.model_path.rstrip("/")),
                "memory_bytes": _model_bytes(tier.model_path) if fields["loaded"] else None,
                **fields,
                "cache_hit_rate": round(counters.get("hits", 0) / looked_up, 4) if looked_up else None,
            }
        )
    return {"tiers": tiers, "cache": cache, "server": lifecycle.snapshot()}
