"""Every answer validates against the response model the OpenAPI document declares for it."""

import json

import pytest

from openai_api.schemas.models import ModelCard, ModelList
from openai_api.schemas.objects import ChatCompletion, ChatCompletionChunk, Completion
from tests.sse import sse_events

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("path, body, model, chunk", [
    ("/v1/chat/completions", {"messages": USER, "logprobs": True, "n": 2}, ChatCompletion, ChatCompletionChunk),
    ("/v1/completions", {"prompt": ["a", "b"], "echo": True}, Completion, Completion),
])
async def test_answers_and_chunks_are_the_documented_objects(post, fake_tier, manager, path, body, model, chunk):
    body = {"model": "fake", "max_tokens": 3, **body}
    model.model_validate_json((await post(path, body)).content, strict=True)
    r = await post(path, {**body, "stream": True, "stream_options": {"include_usage": True}})
    events = sse_events(b"".join([c async for c in r.streaming_content]))
    assert events[-1] is None
    for event in events[:-1]:
        chunk.model_validate(event, strict=True)


async def test_model_cards_are_the_documented_objects(client, fake_tier):
    ModelList.model_validate_json((await client.get("/v1/models")).content, strict=True)
    ModelCard.model_validate(json.loads((await client.get("/v1/models/fake")).content), strict=True)
