from django.http import HttpRequest
from ninja import Router

from ..access import authorized_tier
from ..schemas.objects import EmbeddingList
from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.embeddings import EmbeddingRequest
from ..serving.embeddings import create_embeddings

router = Router(tags=["embeddings"])


@router.post("/embeddings", response={200: EmbeddingList, **error_responses(*GENERATION_ERRORS)}, summary="Create embeddings (dense; BGE-M3 tiers add sparse and ColBERT on request)")
async def embeddings(request: HttpRequest, body: EmbeddingRequest):
    """https://platform.openai.com/docs/api-reference/embeddings/create"""
    _, spec = await authorized_tier(request, model=body.model)
    return await create_embeddings(body, spec=spec)
