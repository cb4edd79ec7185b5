"""Authenticated internal endpoints the management commands call (`warm`, `unload`, `status`,
`clearcache`), and the cache statistics. Mounted at /internal/; bearer token: INTERNAL_TOKEN
(or one derived from SECRET_KEY, see registry/client.py).
"""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from inference.manager import get_manager
from llmservice.errors import InvalidRequest, ModelUnavailable, ServiceError, SharedStoreUnavailable
from registry.client import internal_token
from registry.signals import CacheClearIncomplete
from registry.selectors import cached_response_stats, tier_aget, tier_spec
from registry.services import cached_response_clear
from registry.tier_snapshot import tier_snapshot_clear

from ..cache import cache_stats
from ..errors import error_response, install_error_handlers
from ..parser import StrictJSONParser
from ..status import status_snapshot, tier_fields

UNAUTHORIZED = "Missing or wrong internal token (Authorization: Bearer ...); see INTERNAL_TOKEN."
NOTHING_TO_UNLOAD = "Name the tiers to unload, or pass all=true."
WARM_TIMEOUT_SECONDS = 600


class InternalToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> bool:
        return hmac.compare_digest(token, internal_token())


internal_api = NinjaAPI(
    title="llmservice internal", version="1.0", urls_namespace="internal", docs_url=None, auth=InternalToken(),
    parser=StrictJSONParser(),
)


class UnloadIn(Schema):
    tiers: list[str] = []
    all: bool = False


class ClearIn(Schema):
    tier: str | None = None
    expired_only: bool = False


@internal_api.post("/tiers/reread")
async def tiers_reread(request: HttpRequest):
    """Drop the tier snapshot: tiers another process changed (`manage.py sync_tiers`) apply from the next request."""
    tier_snapshot_clear()
    return {"reread": True}


@internal_api.get("/status")
async def server_status(request: HttpRequest):
    """Every tier with its live state, queue, latency and cache hit rate."""
    return await status_snapshot()


@internal_api.post("/warm/{tier}")
async def warm(request: HttpRequest, tier: str):
    """Load a tier now; answers once it is loaded (or failed), with its load time."""
    found = await tier_aget(model=tier)
    status = await sync_to_async(get_manager().warm, thread_sensitive=False)(tier_spec(tier=found), WARM_TIMEOUT_SECONDS)
    if status.state == "failed":
        raise ModelUnavailable(status.error or f"Model '{found.name}' failed to load.", param="tier")
    return {"name": found.name, **tier_fields(status)}


@internal_api.post("/unload")
async def unload(request: HttpRequest, body: UnloadIn):
    """Unload tiers once their in-flight requests finish."""
    manager = get_manager()
    if body.all:
        return {"unloaded": manager.unload_all(), "not_loaded": []}
    if not body.tiers:
        raise InvalidRequest(NOTHING_TO_UNLOAD, param="tiers")
    names = [(await tier_aget(model=name)).name for name in body.tiers]
    done = {name: manager.unload(name) for name in names}
    return {"unloaded": [n for n, ok in done.items() if ok], "not_loaded": [n for n, ok in done.items() if not ok]}


@internal_api.post("/cache/clear")
async def cache_clear(request: HttpRequest, body: ClearIn):
    """Delete cached responses from memory and the database: all, a tier's, or the expired ones."""
    tier = (await tier_aget(model=body.tier)).name if body.tier else None
    try:
        deleted = await sync_to_async(cached_response_clear)(tier=tier, expired_only=body.expired_only)
    except CacheClearIncomplete as exc:
        raise SharedStoreUnavailable(f"Deleted {exc.deleted} cached responses from the database, but {exc}",
                                     code="cache_front_not_cleared") from None
    return {"deleted": deleted}


@internal_api.get("/cache/stats")
async def cache_statistics(request: HttpRequest):
    """Hits, misses, hit rate, entries and bytes in memory and in the database, per tier."""
    stats = cache_stats()
    database = await sync_to_async(cached_response_stats)()
    stats["database_entries"] = sum(d["entries"] for d in database.values())
    stats["database_bytes"] = sum(d["bytes"] for d in database.values())
    for name in set(stats["tiers"]) | set(database):
        row = stats["tiers"].setdefault(name, {"hits": 0, "misses": 0, "entries": 0, "bytes": 0})
        looked_up = row["hits"] + row["misses"]
        row["hit_rate"] = round(row["hits"] / looked_up, 4) if looked_up else None
        row["database_entries"] = database.get(name, {}).get("entries", 0)
        row["database_bytes"] = database.get(name, {}).get("bytes", 0)
    return stats


@internal_api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    error = ServiceError(UNAUTHORIZED, code="invalid_api_key")
    error.status, error.type = 401, "invalid_request_error"
    return error_response(error)


install_error_handlers(internal_api)
