"""Probes and the scrape: /health (liveness), /ready (readiness), /metrics (Prometheus)."""

import hmac
from datetime import datetime, timezone

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from inference.manager import get_manager
from inference.status import TierStatus
from llmservice.errors import ServerShuttingDown, ServiceError, Unauthorized
from llmservice.lifecycle import lifecycle
from registry.tier_snapshot import tiers_snapshot

from ..errors import error_response

NOT_READY_DRAINING = "Not ready: the server is shutting down ({reason})."
NOT_READY_DATABASE = "Not ready: the database is unreachable ({reason})."
METRICS_UNAUTHORIZED = "Missing or wrong metrics token (Authorization: Bearer ...); see METRICS_TOKEN."


def _tier_health(status: TierStatus | None) -> dict:
    if status is None:
        return {"loaded": False, "state": "unloaded"}
    fields = {"loaded": status.loaded, "state": status.state}
    if status.upstream is not None:  # a remote tier: its upstream's health (inference/remote.py)
        fields["upstream"] = status.upstream
    if status.state in ("ready", "retiring"):  # what its engine is doing (TierStatus)
        fields.update(running=status.running, queued=status.queued, slots=status.slots, kv_cache_usage=status.kv_cache_usage)
    if status.state == "ready":  # the keep_alive countdown (None: busy, or it never unloads)
        fields.update(keep_alive=status.keep_alive, unload_in_seconds=status.as_dict()["unload_in_seconds"])
    if status.state == "failed":  # why, and when the next load attempt may happen
        fields["error"] = status.error
        fields["next_retry_at"] = (
            datetime.fromtimestamp(status.retry_at, timezone.utc).isoformat(timespec="seconds") if status.retry_at else None
        )
    return fields


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness, which tiers are loaded, and the auto-shutdown countdown. Never loads a model."""
    status = get_manager().status()
    tiers = {t.name: _tier_health(status.get(t.name)) for t in await tiers_snapshot()}
    server = lifecycle.snapshot()
    return JsonResponse(
        {
            "status": "ok",
            "tiers": tiers,
            "loaded": [n for n, s in tiers.items() if s["loaded"]],
            "state": server["state"],
            "shutdown_in_seconds": server["shutdown_in_seconds"],
        }
    )


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@require_GET
async def ready(request: HttpRequest) -> HttpResponse:
    """200 only while accepting requests (not draining) with the database reachable."""
    if not lifecycle.accepting:
        response = error_response(ServerShuttingDown(NOT_READY_DRAINING.format(reason=lifecycle.reason)))
        response._has_been_logged = True  # expected while draining: no ERROR line from Django per probe
        return response
    try:
        await sync_to_async(_database_ping)()
    except DatabaseError as exc:
        error = ServiceError(NOT_READY_DATABASE.format(reason=exc), code="database_unavailable")
        error.status = 503
        return error_response(error)
    return JsonResponse({"status": "ready"})


@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    token = settings.METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return error_response(Unauthorized(METRICS_UNAUTHORIZED))
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
