from django.http import HttpRequest
from ninja import Router

from ..schemas.errors import GENERATION_ERRORS, error_responses
from ..schemas.chat import ChatCompletionRequest
from ..cache import cached_call
from ..serving.chat import chat_completion

router = Router(tags=["chat"])


@router.post("/chat/completions", response=error_responses(*GENERATION_ERRORS), summary="Create a chat completion (streaming with stream=true)")
async def create_chat_completion(request: HttpRequest, body: ChatCompletionRequest):
    """https://platform.openai.com/docs/api-reference/chat/create"""
    return await cached_call(request, body, endpoint="chat", call=chat_completion)
