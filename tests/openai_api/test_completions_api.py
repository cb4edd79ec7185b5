"""Legacy completions through Django's async client, with the fake backend."""

import json

import pytest

from tests.openai_api.conftest import assert_error
from tests.openai_api.test_chat_api import sse_events

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETIONS = "/v1/completions"


async def test_completion_object_and_openai_default_of_16_tokens(post, fake_tier, manager):
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": "a b"})).content)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 16, "total_tokens": 18}


async def test_tier_default_beats_the_openai_default(post, fake_tier, manager):
    fake_tier.max_tokens = 3
    await fake_tier.asave()
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": "a"})).content)
    assert body["usage"]["completion_tokens"] == 3
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": "a", "max_tokens": 1})).content)
    assert body["usage"]["completion_tokens"] == 1


async def test_list_of_prompts_times_n(post, fake_tier, manager):
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": ["a", "b c"], "n": 2, "max_tokens": 1})).content)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["prompt_tokens"] == 3


async def test_echo_prepends_the_prompt(post, fake_tier, manager):
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": "say", "echo": True, "max_tokens": 1})).content)
    assert body["choices"][0]["text"] == "sayw0 "


async def test_streamed_completion(post, fake_tier, manager):
    r = await post(COMPLETIONS, {"model": "fake", "prompt": "x", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}})
    events = await sse_events(r)
    assert [e["choices"][0]["text"] for e in events[:2]] == ["w0 ", "w1 "]
    assert events[2]["choices"][0]["finish_reason"] == "length"
    assert events[3]["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    "change, param, code",
    [
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": 5}, "prompt", "invalid_type"),
        ({"prompt": [[1, 2], []]}, "prompt", "invalid_value"),
        ({"suffix": "end"}, "suffix", "unsupported_parameter"),
        ({"best_of": 3}, "best_of", "unsupported_parameter"),
        ({"echo": True, "logprobs": 2}, "echo", "unsupported_parameter"),
        ({"logprobs": 6}, "logprobs", "invalid_value"),
        ({"max_tokens": -5}, "max_tokens", "invalid_value"),
        ({"messages": []}, "messages", "unknown_parameter"),
    ],
)
async def test_bad_completion_inputs_get_the_envelope(post, fake_tier, manager, change, param, code):
    r = await post(COMPLETIONS, {"model": "fake", "prompt": "x", **change})
    assert_error(r, 400, code=code, param=param)


async def test_best_of_equal_to_n_is_accepted(post, fake_tier, manager):
    body = json.loads((await post(COMPLETIONS, {"model": "fake", "prompt": "x", "n": 2, "best_of": 2, "max_tokens": 1})).content)
    assert [c["index"] for c in body["choices"]] == [0, 1]
