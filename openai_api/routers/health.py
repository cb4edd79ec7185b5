from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from inference.manager import get_manager
from registry.selectors import tier_alist


@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    """Liveness and which tiers are loaded. Never loads a model."""
    status = get_manager().status()
    tiers = {
        t.name: {"loaded": t.name in status and status[t.name].state == "ready", "state": status[t.name].state if t.name in status else "unloaded"}
        for t in await tier_alist()
    }
    return JsonResponse({"status": "ok", "tiers": tiers, "loaded": [n for n, s in tiers.items() if s["loaded"]]})
