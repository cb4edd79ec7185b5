from django.http import HttpRequest
from ninja import Router

from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.completions import CompletionRequest
from ..cache import cached_call
from ..schemas.objects import Completion
from ..serving.completions import COMPLETIONS

router = Router(tags=["completions"])


@router.post("/completions", response={200: Completion, **error_responses(*GENERATION_ERRORS)}, summary="Create a text completion (streaming with stream=true: Completion chunks)")
async def create_completion(request: HttpRequest, body: CompletionRequest):
    """https://platform.openai.com/docs/api-reference/completions/create"""
    return await cached_call(request, body, endpoint=COMPLETIONS)
