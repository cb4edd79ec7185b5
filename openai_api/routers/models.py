from django.http import HttpRequest
from ninja import Router

from inference.manager import get_manager
from registry.tier_snapshot import tiers_snapshot

from ..access import caller_allows, visible_tier
from ..schemas.errors import READ_ERRORS, error_responses
from ..schemas.models import ModelCard, ModelList
from ..serving.models import model_card

router = Router(tags=["models"])


@router.get("/models", response={200: ModelList, **error_responses(*READ_ERRORS)}, summary="List the tiers served here")
async def list_models(request: HttpRequest):
    """https://platform.openai.com/docs/api-reference/models/list"""
    status = get_manager().status()
    tiers = [t for t in await tiers_snapshot() if caller_allows(request, t.name)]  # a key sees its own tiers
    return {"object": "list", "data": [model_card(t, status.get(t.name)) for t in tiers]}


@router.get("/models/{path:model_id}", response={200: ModelCard, **error_responses(*READ_ERRORS)}, summary="Retrieve one tier by name, alias or model file name")
async def retrieve_model(request: HttpRequest, model_id: str):
    """https://platform.openai.com/docs/api-reference/models/retrieve"""
    tier, _ = await visible_tier(request, model=model_id)
    return model_card(tier, get_manager().status().get(tier.name))
