from django.http import HttpRequest
from ninja import Router

from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.completions import CompletionRequest
from ..cache import cached_call
from ..serving.completions import completion

router = Router(tags=["completions"])


@router.post("/completions", response=error_responses(*GENERATION_ERRORS), summary="Create a text completion (streaming with stream=true)")
async def create_completion(request: HttpRequest, body: CompletionRequest):
    """https://platform.openai.com/docs/api-reference/completions/create"""
    return await cached_call(request, body, endpoint="completions", call=completion)
