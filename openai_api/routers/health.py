from datetime import datetime, timezone

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from inference.manager import WorkerStatus, get_manager
from registry.selectors import tier_alist


def _tier_health(status: WorkerStatus | None) -> dict:
    if status is None:
        return {"loaded": False, "state": "unloaded"}
    fields = {"loaded": status.state == "ready", "state": status.state}
    if status.state == "failed":  # why, and when the next load attempt may happen
        fields["error"] = status.error
        fields["next_retry_at"] = (
            datetime.fromtimestamp(status.retry_at, timezone.utc).isoformat(timespec="seconds") if status.retry_at else None
        )
    return fields


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness and which tiers are loaded. Never loads a model."""
    status = get_manager().status()
    tiers = {t.name: _tier_health(status.get(t.name)) for t in await tier_alist()}
    return JsonResponse({"status": "ok", "tiers": tiers, "loaded": [n for n, s in tiers.items() if s["loaded"]]})
