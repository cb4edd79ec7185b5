"""Model cards: the OpenAI model object plus llmservice's per-tier extension fields.

https://platform.openai.com/docs/api-reference/models/object
"""

from __future__ import annotations

import os

from inference.status import TierStatus
from registry.models import Tier
from registry.selectors import tier_spec


def model_card(tier: Tier, status: TierStatus | None) -> dict:
    return {
        "id": tier.name,
        "object": "model",
        "created": int(tier.created_at.timestamp()),
        "owned_by": "llmservice",
        # --- llmservice extensions -----------------------------------------------------
        "kind": tier.kind,
        "backend": tier.backend,
        "loaded": status is not None and status.loaded,
        "state": status.state if status else "unloaded",
        "load_time": round(status.load_seconds, 3) if status and status.load_seconds is not None else None,
        "running": status.running if status else 0,  # requests its engine serves now
        "queued": status.queued if status else 0,  # requests waiting for a free slot
        "slots": status.slots if status else None,  # how many requests the loaded engine serves at once
        "kv_cache_usage": status.kv_cache_usage if status else None,  # 0..1; None without a KV cache
        "aliases": tier.alias_list,
        "upstream": status.upstream if status else None,  # remote tiers: "up" or "down" (circuit breaker)
        "model_file": os.path.basename(tier.model_path.rstrip("/")),
        "context_length": context_length(tier),
    }


def context_length(tier: Tier) -> int | None:
    """The window a chat tier loads with (its n_ctx option, else its backend's default); None for other kinds."""
    if tier.kind != Tier.Kind.CHAT:
        return None
    return tier_spec(tier=tier).load.get("n_ctx")
