from django.http import HttpRequest
from django.urls import resolve
from django.views.decorators.csrf import csrf_exempt
from ninja import Router

from ..access import authorized_tier
from ..schemas.objects import RerankResponse
from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.rerank import RerankRequest
from ..serving.rerank import create_rerank

router = Router(tags=["rerank"])


@router.post("/rerank", response={200: RerankResponse, **error_responses(*GENERATION_ERRORS)}, summary="Rerank documents against a query (Cohere-compatible; also at /rerank)")
async def rerank(request: HttpRequest, body: RerankRequest):
    """https://docs.cohere.com/reference/rerank"""
    _, spec = await authorized_tier(request, model=body.model)
    return await create_rerank(body, spec=spec)


@csrf_exempt
async def rerank_alias(request: HttpRequest):
    """`/rerank` (TEI's and Jina's path): the same endpoint as `/v1/rerank`, errors included."""
    return await resolve("/v1/rerank").func(request)
