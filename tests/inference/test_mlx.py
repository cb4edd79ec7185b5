"""The MLX backend on a real mlx-lm model: the tiny random-weight llama `build_models` makes, with
SmolLM2's real tokenizer and chat template (its words mean nothing: test structure, not content)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from inference.backends.mlx import MlxBackend
from inference.constraints import ConstraintFailed, JsonSchema, ToolCalls, ToolSpec
from inference.events import Delta, Finished, Started
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable

MESSAGES = (ChatMessage("user", "Write a short poem about the sea."),)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "pet": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age", "pet"],
    "additionalProperties": False,
}


def make_spec(path, **load):
    return ModelSpec(name="tiny-mlx", backend="mlx", kind="chat", model_path=str(path), load={"n_ctx": 512, **load}, defaults={})


@pytest.fixture(scope="module")
def backend(mlx_tiny_path):
    b = MlxBackend.load(make_spec(mlx_tiny_path))
    yield b
    b.close()


def request(messages=MESSAGES, prompt=None, echo=False, constraint=None, compiled=None, **sampling):
    if prompt is not None:
        messages = None
    return GenerationRequest(
        sampling=resolve_sampling(sampling, {}), messages=messages, prompt=prompt, echo=echo,
        constraint=constraint, compiled=compiled,
    )


def run(backend, should_stop=lambda: False, **kwargs):
    events = list(backend.generate(request(**kwargs), should_stop))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    deltas = [e for e in events if isinstance(e, Delta)]
    return events[0], "".join(d.text for d in deltas), deltas, events[-1]


def test_chat_uses_the_tokenizers_template_and_counts_tokens(backend):
    started, text, _, finished = run(backend, temperature=0, max_tokens=12)
    assert started.prompt_tokens > 20  # SmolLM2's template adds its system prompt and role markers
    assert text and finished == Finished("length", started.prompt_tokens, 12)


def test_stop_string_cuts_the_output_before_it(backend):
    _, full, _, _ = run(backend, prompt="Once upon a time", temperature=0, max_tokens=30)
    stop = full[12:16]
    _, text, _, finished = run(backend, prompt="Once upon a time", temperature=0, max_tokens=30, stop=[stop])
    assert finished.reason == "stop"
    assert text == full[: full.index(stop)]


def test_logprobs_describe_each_sampled_token(backend):
    _, text, deltas, finished = run(backend, prompt="Once upon a time", temperature=0, max_tokens=6, logprobs=True, top_logprobs=3)
    entries = [lp for d in deltas for lp in d.logprobs or []]
    assert len(entries) == finished.completion_tokens == 6
    assert "".join(e.token for e in entries) == text
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert entry.top[0][1] >= entry.top[1][1] >= entry.top[2][1]
        assert entry.top[0][0] == entry.token  # greedy: the sampled token is the likeliest one


def test_logit_bias_forces_and_bans_tokens(backend):
    forced = backend._tokenizer.encode(" ocean", add_special_tokens=False)[0]
    _, text, _, _ = run(backend, temperature=0, max_tokens=4, logit_bias={forced: 100})
    assert text == " ocean" * 4
    _, greedy, deltas, _ = run(backend, temperature=0, max_tokens=1, logprobs=True)
    first = backend._tokenizer.encode(greedy, add_special_tokens=False)[0]
    _, banned, _, _ = run(backend, temperature=0, max_tokens=1, logit_bias={first: -100})
    assert banned != greedy


def test_logit_bias_outside_the_vocabulary_is_a_400(backend):
    with pytest.raises(InvalidRequest, match="outside the vocabulary") as caught:
        run(backend, temperature=0, max_tokens=2, logit_bias={10**7: 5})
    assert caught.value.param == "logit_bias"


def test_penalties_change_a_repetitive_greedy_output(backend):
    _, plain, _, _ = run(backend, temperature=0, max_tokens=24)
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repeat_penalty": 2.0}):
        _, text, _, _ = run(backend, temperature=0, max_tokens=24, **penalty)
        assert text != plain, penalty


def test_cancellation_ends_the_choice_with_its_count(backend):
    calls = iter(range(1000))
    _, _, _, finished = run(backend, should_stop=lambda: next(calls) >= 3, temperature=0, max_tokens=50)
    assert finished.reason == "cancelled" and finished.completion_tokens == 3
    assert backend.decoder.active() == 0


def test_prompt_as_token_ids_with_echo(backend):
    ids = tuple(backend._tokenizer.encode("Hello world", add_special_tokens=False))
    started, text, _, finished = run(backend, prompt=ids, echo=True, temperature=0, max_tokens=3)
    assert started.echo == "Hello world" and started.prompt_tokens == len(ids)
    with pytest.raises(InvalidRequest, match="outside the vocabulary"):
        run(backend, prompt=(1, 10**7), temperature=0, max_tokens=3)


def test_a_prompt_longer_than_the_context_is_refused(mlx_tiny_path):
    small = MlxBackend.load(make_spec(mlx_tiny_path, n_ctx=32))
    try:
        with pytest.raises(ContextLengthExceeded, match="maximum context length is 32 tokens"):
            run(small, prompt="word " * 40, max_tokens=2)
        _, _, _, finished = run(small, prompt="word", temperature=0)  # no max_tokens: the context ends it
        assert finished.reason == "length" and finished.prompt_tokens + finished.completion_tokens == 32
    finally:
        small.close()


def test_check_names_what_is_not_an_mlx_model(tmp_path, smollm2_path):
    assert MlxBackend.check(make_spec(tmp_path / "missing")) == [f"MLX model directory not found: {tmp_path / 'missing'}"]
    assert "no config.json" in MlxBackend.check(make_spec(tmp_path))[0]
    with pytest.raises(ModelUnavailable, match="cannot be loaded"):
        MlxBackend.load(make_spec(smollm2_path))  # a GGUF file is not an MLX directory


# --- structured output through the constraint layer -------------------------------------------
def constrained(backend, constraint, **sampling):
    compiled = backend.constraint_compiler.compile(constraint)
    return run(backend, constraint=constraint, compiled=compiled, **sampling)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_is_enforced(backend, seed):
    schema = JsonSchema(schema=PERSON, strict=True, param="response_format")
    _, text, _, finished = constrained(backend, schema, temperature=1.0, seed=seed, max_tokens=60)
    jsonschema.validate(json.loads(text), PERSON)
    assert finished.reason == "stop"


def test_forced_tool_call_parses(backend):
    weather = ToolSpec("get_weather", "Weather in a city", {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"],
    })
    calls = ToolCalls(tools=(weather,), choice="required")
    started, text, _, finished = constrained(backend, calls, temperature=0.7, seed=5, max_tokens=80)
    from inference.constraints import tool_format

    answer = tool_format(started.tool_format).parse(text, "required")
    assert [name for name, _ in answer.calls] == ["get_weather"]
    assert set(json.loads(answer.calls[0][1])) == {"city"}


def test_a_constraint_failure_mid_way_is_a_400(backend, monkeypatch):
    from inference.backends import mlx_constraints

    schema = JsonSchema(schema=PERSON, strict=True, param="response_format")
    monkeypatch.setattr(mlx_constraints.MlxConstraintProcessor, "_bias_cpu", lambda self, ids, logits: logits)
    with pytest.raises(ConstraintFailed) as caught:  # unmasked, the model's first token breaks the schema
        constrained(backend, schema, temperature=0, max_tokens=20, logit_bias={backend._tokenizer.encode("x")[0]: 100})
    assert caught.value.param == "response_format" and caught.value.status == 400


# --- several sequences in one batch -------------------------------------------------------------
def run_together(backend, requests):
    """Start every request in the one batch, step until all end: each one's (text, Finished)."""
    outputs = [[] for _ in requests]
    sequences = [backend.begin(r, index=0, emit=outputs[i].append)[1] for i, r in enumerate(requests)]
    while any(s.reason is None for s in sequences):
        backend.decoder.step()
    return [("".join(e.text for e in out if isinstance(e, Delta)), out[-1]) for out in outputs]


def test_a_batch_of_eight_matches_the_solo_runs(backend):
    requests = [request(messages=(ChatMessage("user", f"Question {i}"),), temperature=0, max_tokens=6 + i) for i in range(4)]
    requests += [request(prompt=f"Story {i}:", temperature=1.0, seed=100 + i, max_tokens=8) for i in range(3)]
    requests.append(request(prompt="Stop early", temperature=0, max_tokens=20, stop=[run_alone(backend, "Stop early")[5:8]]))
    solo = [run_together(backend, [r])[0] for r in requests]
    assert run_together(backend, requests) == solo
    assert solo[-1][1].reason == "stop" and [f.reason for _, f in solo[:7]] == ["length"] * 7


def run_alone(backend, prompt):
    return run(backend, prompt=prompt, temperature=0, max_tokens=20)[1]


def test_constrained_and_free_sequences_share_a_batch(backend):
    schema = JsonSchema(schema=PERSON, strict=True, param="response_format")
    compiled = backend.constraint_compiler.compile(schema)
    requests = [
        request(temperature=1.0, seed=s, max_tokens=60, constraint=schema, compiled=compiled) if s % 2 else request(temperature=0, max_tokens=10)
        for s in range(6)
    ]
    results = run_together(backend, requests)
    for s, (text, finished) in enumerate(results):
        if s % 2:
            jsonschema.validate(json.loads(text), PERSON)
        else:
            assert finished.reason == "length" and finished.completion_tokens == 10
    assert results == [run_together(backend, [r])[0] for r in requests]
