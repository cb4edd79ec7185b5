"""SmolLM2-135M-Instruct converted to MLX by `build_models`, as the `light-mlx` tier of the shared
server: the real weights through the real server and the `openai` client (short outputs: it decodes
a few tokens a second on a 2-core CPU)."""

from __future__ import annotations

import json

import jsonschema
import pytest

pytestmark = pytest.mark.e2e

MODEL = "light-mlx"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_converted_model_answers_sensibly(client):
    # Greedy on the real weights: a conversion that lost the rope base or the weights writes garbage here.
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=8)
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 20 and 0 < reply.usage.completion_tokens <= 8


def test_streaming_with_a_stop_string_and_logprobs(client):
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=8, stop=[" Paris"], logprobs=True, top_logprobs=2, stream=True,
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert "Paris" not in text and text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The token that completed the stop string keeps its logprob entry (the shared TextAssembler's rule).
    assert "".join(e.token for e in entries).startswith(text) and all(len(e.top_logprobs) == 2 for e in entries)


def test_completions_and_sampling_parameters(client):
    kwargs = dict(model=MODEL, prompt="The sea is", max_tokens=6, temperature=0.9, top_p=0.9, seed=5, frequency_penalty=0.5,
                  extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.1})
    first, second = (client.completions.create(**kwargs).choices[0].text for _ in range(2))
    assert first == second and first


def test_json_schema(client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=20,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
