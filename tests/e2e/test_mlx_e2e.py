"""An MLX tier through the real server and the official `openai` client, next to a llama.cpp tier.

The shared server's `tiny-mlx` tier (tests/conftest.py) runs the tiny random-weight llama that
`build_models` makes (SmolLM2's tokenizer and chat template, meaningless words): these tests check
structure, enforcement and plumbing, not content.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.e2e

MLX = "tiny-mlx"
MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def chat(client, **kwargs):
    return client.chat.completions.create(model=kwargs.pop("model", MLX), **{"messages": MESSAGES, **kwargs})


def test_chat_non_streaming_and_streaming_agree(client):
    reply = chat(client, temperature=0, max_tokens=12)
    assert reply.model == MLX
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 12 and reply.usage.prompt_tokens > 20
    chunks = list(chat(client, temperature=0, max_tokens=12, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 12


def test_completions_with_stop_logprobs_echo_and_seed(client):
    full = client.completions.create(model=MLX, prompt="Once upon a time", temperature=0, max_tokens=20).choices[0].text
    stop = full[10:14]
    cut = client.completions.create(model=MLX, prompt="Once upon a time", temperature=0, max_tokens=20, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    echoed = client.completions.create(model=MLX, prompt="Once upon a time", max_tokens=3, temperature=0, echo=True)
    assert echoed.choices[0].text == "Once upon a time" + full[: len(echoed.choices[0].text) - len("Once upon a time")]
    choice = client.completions.create(model=MLX, prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2).choices[0]
    assert "".join(choice.logprobs.tokens) == choice.text
    assert len(choice.logprobs.tokens) == 5 and all(len(top) == 2 for top in choice.logprobs.top_logprobs)
    seeded = [client.completions.create(model=MLX, prompt="Hi", max_tokens=8, temperature=1, seed=7).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_n_choices_with_a_seed_differ_and_repeat(client):
    a = chat(client, n=2, seed=11, temperature=1.0, max_tokens=8)
    b = chat(client, n=2, seed=11, temperature=1.0, max_tokens=8)
    texts = [c.message.content for c in sorted(a.choices, key=lambda c: c.index)]
    assert texts == [c.message.content for c in sorted(b.choices, key=lambda c: c.index)]
    assert texts[0] != texts[1]


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_is_enforced(client, stream):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in (1, 2):
        if stream:
            chunks = chat(client, response_format=response_format, temperature=1.0, seed=seed, max_tokens=80, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = chat(client, response_format=response_format, temperature=1.0, seed=seed, max_tokens=80).choices[0].message.content
        jsonschema.validate(json.loads(text), PERSON)


def test_an_unenforceable_strict_schema_is_a_400_naming_it(client):
    schema = {"type": "object", "properties": {"a": {"not": {"type": "string"}}}, "required": ["a"], "additionalProperties": False}
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}, max_tokens=5)
    assert caught.value.body["param"].startswith("response_format")
    assert "not" in caught.value.body["message"]


def test_reasoning_effort_without_a_thinking_switch_is_a_400_naming_it(client):
    """SmolLM2's chat template (the tiny model's) has no thinking switch: refused, as on llama.cpp tiers."""
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, reasoning_effort="low", max_tokens=5)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "reasoning_effort"


def test_tool_call_and_streamed_tool_call(client):
    reply = chat(client, tools=[WEATHER], tool_choice="required", temperature=0.7, seed=3, max_tokens=80)
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    arguments, names, finish = "", [], None
    for chunk in chat(client, tools=[WEATHER], tool_choice="required", temperature=0.7, seed=4, max_tokens=80, stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            names += [delta.function.name] if delta.function.name else []
            arguments += delta.function.arguments or ""
    assert finish == "tool_calls" and names == ["get_weather"]
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])


def test_eight_concurrent_requests_streaming_and_not_match_their_solo_runs(client):
    """Batched on the MLX tier: greedy and seeded answers are the ones each request gets alone."""
    def ask(i):
        kwargs = dict(messages=[{"role": "user", "content": f"Story {i}"}], max_tokens=6 + i)
        kwargs.update(temperature=1.0, seed=i) if i % 2 else kwargs.update(temperature=0)
        if i % 3:
            return chat(client, **kwargs).choices[0].message.content
        return "".join(c.choices[0].delta.content or "" for c in chat(client, stream=True, **kwargs) if c.choices)

    alone = [ask(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == alone


def test_mlx_and_llamacpp_tiers_interleaved(client):
    """Concurrent requests on both tiers all complete; each greedy answer matches its solo run."""
    jobs = [(model, f"Question {i}: what is {i} + {i}?") for i in range(3) for model in (MLX, "light")]

    def ask(job):
        model, text = job
        return chat(client, model=model, messages=[{"role": "user", "content": text}], temperature=0, max_tokens=6).choices[0].message.content

    solo = [ask(job) for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(ask, jobs))
    assert together == solo and all(solo)


def test_models_lists_the_mlx_tier_with_its_batch_size(client):
    chat(client, max_tokens=1)  # loaded
    cards = {m.id: m.model_extra for m in client.models.list().data}
    assert cards[MLX]["backend"] == "mlx" and cards[MLX]["kind"] == "chat"
    assert cards[MLX]["slots"] == 8  # MLX_PARALLEL
