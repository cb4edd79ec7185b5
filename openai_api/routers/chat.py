from django.http import HttpRequest
from ninja import Router

from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.chat import ChatCompletionRequest
from ..cache import cached_call
from ..schemas.objects import ChatCompletion
from ..serving.chat import CHAT

router = Router(tags=["chat"])


@router.post("/chat/completions", response={200: ChatCompletion, **error_responses(*GENERATION_ERRORS)}, summary="Create a chat completion (streaming with stream=true: ChatCompletionChunk events)")
async def create_chat_completion(request: HttpRequest, body: ChatCompletionRequest):
    """https://platform.openai.com/docs/api-reference/chat/create"""
    return await cached_call(request, body, endpoint=CHAT)
