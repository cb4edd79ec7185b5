from django.http import HttpRequest
from ninja import Router

from inference.manager import get_manager
from registry.selectors import tier_aget, tier_alist

from ..serving.models import model_card

router = Router(tags=["models"])


@router.get("/models", summary="List the tiers served here")
async def list_models(request: HttpRequest):
    """https://platform.openai.com/docs/api-reference/models/list"""
    status = get_manager().status()
    return {"object": "list", "data": [model_card(t, status.get(t.name)) for t in await tier_alist()]}


@router.get("/models/{path:model_id}", summary="Retrieve one tier by name, alias or model file name")
async def retrieve_model(request: HttpRequest, model_id: str):
    """https://platform.openai.com/docs/api-reference/models/retrieve"""
    tier = await tier_aget(model=model_id)
    return model_card(tier, get_manager().status().get(tier.name))
