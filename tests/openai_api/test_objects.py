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


TRICKY = ["", " plain", 'a "quote" and \\ backslash', "line\nbreak\ttab\r", "\x00\x1f controls", "héllo 世界 🤖", "@@text@@"]


@pytest.mark.parametrize("text", TRICKY)
def test_pre_serialised_text_events_are_the_models_bytes(text):
    """The per-token fast path (TextEvents) sends exactly what building the chunk model would."""
    from types import SimpleNamespace

    from inference.params import ModelSpec
    from openai_api.serving.chat import ChatRenderer
    from openai_api.serving.choices import TextOut
    from openai_api.serving.common import sse_bytes
    from openai_api.serving.completions import CompletionRenderer
    from openai_api.schemas.objects import ChatDelta, CompletionChoice

    spec = ModelSpec(name="light", backend="fake", kind="chat", model_path="x", load={}, defaults={})
    for usage in (False, True):
        options = SimpleNamespace(include_usage=usage)
        chat = ChatRenderer(spec, SimpleNamespace(logprobs=None, stream_options=options), forced_calls=False)
        assert chat.chunk(TextOut(1, text)) == sse_bytes(chat._chunk(1, ChatDelta(content=text)))
        completion = CompletionRenderer(spec, SimpleNamespace(logprobs=None, stream_options=options))
        whole = completion._object([CompletionChoice(index=2, text=text, logprobs=None, finish_reason=None)])
        assert completion.chunk(TextOut(2, text)) == sse_bytes(whole)
