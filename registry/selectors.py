"""Reading tiers: resolving a client's `model` name and building the inference layer's spec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone

from inference.admission import QueueLimits
from inference.backends import engine_class, engine_problems
from inference.keep_alive import duration_parse
from inference.options import options_resolve
from inference.params import ModelSpec
from llmservice.errors import ModelNotFound, ModelUnavailable

from .models import ApiKey, CachedResponse, StoredResponse, Tier

MODEL_NOT_FOUND = "The model '{model}' does not exist. GET /v1/models lists the tiers served here."
MODEL_DISABLED = "The model '{model}' is disabled in the registry."


def tier_spec(*, tier: Tier) -> ModelSpec:
    """The tier's configuration as a frozen snapshot: its load options complete (global settings
    filling those it leaves unset), its soft sampling defaults, its admission limits, its keep_alive."""
    defaults = {f: getattr(tier, f) for f in Tier.SAMPLING_FIELDS}
    if not defaults["stop"]:
        defaults["stop"] = None
    return ModelSpec(
        name=tier.name,
        backend=tier.backend,
        kind=tier.kind,
        model_path=tier.model_path,
        load=tier_load_options(tier=tier),
        defaults={k: v for k, v in defaults.items() if v is not None},
        aliases=tuple(tier.alias_list),
        limits=tier_limits(tier=tier),
        keep_alive=duration_parse(tier.keep_alive or settings.KEEP_ALIVE),
        keep_alive_max=duration_parse(tier.keep_alive_max or settings.KEEP_ALIVE_MAX),
    )


def tier_load_options(*, tier: Tier) -> dict[str, Any]:
    """Every load option of the tier's engine: its own, else the global setting, else the default.
    A tier whose backend has no engine for its kind keeps its stored options (loading it is a 503)."""
    stored = tier.options if isinstance(tier.options, dict) else {}
    try:
        options = engine_class(tier.backend, tier.kind).options
    except ModelUnavailable:
        return dict(stored)
    return options_resolve(options, stored)


def tier_limits(*, tier: Tier) -> QueueLimits:
    """The tier's admission limits: its own values, else the global settings."""
    return QueueLimits(
        max_waiting=tier.max_waiting if tier.max_waiting is not None else settings.QUEUE_MAX_WAITING,
        max_wait_seconds=(
            tier.max_queue_wait_seconds if tier.max_queue_wait_seconds is not None else settings.QUEUE_MAX_WAIT_SECONDS
        ),
    )


def tier_match(*, tiers: list[Tier], model: str) -> Tier | None:
    """The tier `model` names: by name, then alias, then model file name (with or without suffix)."""
    for tier in tiers:
        if tier.name == model:
            return tier
    for tier in tiers:
        if model in tier.alias_list:
            return tier
    for tier in tiers:
        filename = os.path.basename(tier.model_path.rstrip("/"))
        if model and model in (filename, os.path.splitext(filename)[0]):
            return tier
    return None


def tier_get(*, model: str) -> Tier:
    tier = tier_match(tiers=list(Tier.objects.all()), model=model)
    return enabled_or_raise(tier, model)


async def tier_aget(*, model: str) -> Tier:
    tier = tier_match(tiers=[t async for t in Tier.objects.all()], model=model)
    return enabled_or_raise(tier, model)


async def tier_spec_aget(*, model: str) -> ModelSpec:
    """What a request for `model` runs on; 404 `model_not_found` for anything unknown."""
    return tier_spec(tier=await tier_aget(model=model))


def enabled_or_raise(tier: Tier | None, model: str) -> Tier:
    if tier is None:
        raise ModelNotFound(MODEL_NOT_FOUND.format(model=model), param="model")
    if not tier.enabled:
        raise ModelNotFound(MODEL_DISABLED.format(model=model), param="model")
    return tier


def tier_list(*, enabled_only: bool = True) -> list[Tier]:
    qs = Tier.objects.all()
    return list(qs.filter(enabled=True) if enabled_only else qs)


async def tier_alist(*, enabled_only: bool = True) -> list[Tier]:
    qs = Tier.objects.all()
    return [t async for t in (qs.filter(enabled=True) if enabled_only else qs)]


def tier_problems(*, tier: Tier) -> list[str]:
    """What would stop this tier from loading (unknown backend, invalid option, missing file, ...)."""
    return engine_problems(tier_spec(tier=tier))


# --- Cached responses -------------------------------------------------------------------------
def cached_response_get(*, key: str) -> CachedResponse | None:
    """The unexpired entry for `key`, or None."""
    return CachedResponse.objects.filter(key=key, expires_at__gt=timezone.now()).select_related("tier").first()


def cached_response_stats() -> dict[str, dict[str, int]]:
    """Per tier: entries, bytes and hits stored in the database."""
    rows = CachedResponse.objects.values("tier__name").annotate(
        entries=Count("id"), bytes=Sum("size_bytes"), hits=Sum("hits")
    )
    return {
        r["tier__name"]: {"entries": r["entries"], "bytes": r["bytes"] or 0, "hits": r["hits"] or 0} for r in rows
    }


# --- API keys (issue 11) --------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKeyInfo:
    """What a request needs to know about its key: a snapshot, read once per request."""

    id: int
    name: str
    prefix: str
    tiers: frozenset[str] | None  # None: every tier
    expires_at: datetime | None
    revoked_at: datetime | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    last_used_at: datetime | None

    def allows(self, tier: str) -> bool:
        return self.tiers is None or tier in self.tiers


def api_key_find(*, secret: str) -> ApiKeyInfo | None:
    """The key whose hash matches `secret` (revoked and expired ones too), or None."""
    from .services import api_key_hash

    key = ApiKey.objects.filter(key_hash=api_key_hash(secret=secret)).prefetch_related("tiers").first()
    if key is None:
        return None
    names = frozenset(t.name for t in key.tiers.all())
    return ApiKeyInfo(
        id=key.pk,
        name=key.name,
        prefix=key.prefix,
        tiers=names or None,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        requests_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
        last_used_at=key.last_used_at,
    )


# --- Stored responses (issue 14: the Responses API) -----------------------------------------------
def stored_response_get(*, response_id: str, owner: int | None) -> StoredResponse | None:
    """The unexpired stored response `response_id`; with `owner` (an API key id), only that key's."""
    qs = StoredResponse.objects.filter(response_id=response_id, expires_at__gt=timezone.now())
    if owner is not None:
        qs = qs.filter(api_key_id=owner)
    return qs.first()
