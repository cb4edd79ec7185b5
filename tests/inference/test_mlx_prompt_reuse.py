"""Prompt reuse on MLX tiers, on the real tiny MLX model under the engine contract: a prompt that
starts as a finished sequence did prefills only the rest and answers as with reuse off, a kept KV
cache is never changed by the sequences that start from it, and the kept caches stay within their
bounds. The test thread plays the owner thread."""

from __future__ import annotations

import pytest

from inference.backends.mlx_engine import MlxEngine
from inference.events import Started
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from tests.inference.test_engines import RecordingJob, run_until_done

WORD = 1000  # a token id of SmolLM2's vocabulary
SYSTEM = "You are a careful assistant. You answer in short sentences, about the sea and the ships on it."


def spec(path, **options) -> ModelSpec:
    return ModelSpec(name="tiny-mlx", backend="mlx", kind="chat", model_path=str(path),
                     load={"n_ctx": 512, "parallel": 4, **options}, defaults={})


@pytest.fixture(scope="module")
def plain(mlx_tiny_path):
    """Reuse off: every prompt prefilled whole, the reference answers."""
    e = MlxEngine.load(spec(mlx_tiny_path, prompt_reuse=False))
    yield e
    e.close()


@pytest.fixture
def reusing(mlx_tiny_path):
    """Reuse on (the default), an engine of its own per test: nothing cached by an earlier test."""
    e = MlxEngine.load(spec(mlx_tiny_path))
    yield e
    e.close()


def chat(*turns: str, max_tokens: int = 8, **sampling) -> GenerationRequest:
    """A conversation after the shared system prompt: user, assistant, user, ..."""
    messages = [ChatMessage("system", SYSTEM)]
    messages += [ChatMessage("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]
    values = {"temperature": 0, "max_tokens": max_tokens, **sampling}
    return GenerationRequest(sampling=resolve_sampling(values, {}), messages=tuple(messages))


def run(engine, request) -> RecordingJob:
    job = RecordingJob(request)
    engine.admit(job)
    assert run_until_done(engine, job) == [job]
    assert job.text() and job.finished()[0].reason in ("stop", "length")
    return job


def prompt_tokens(job) -> int:
    return next(e for e in job.events if isinstance(e, Started)).prompt_tokens


def counters(engine) -> dict:
    return dict(engine.stats().counters)


def measured(engine, request) -> tuple[RecordingJob, dict]:
    """Run it alone; how many of its prompt tokens were prefilled and reused."""
    before = counters(engine)
    job = run(engine, request)
    after = counters(engine)
    delta = {k: after[k] - before[k] for k in ("prompt_tokens", "prompt_tokens_evaluated", "prompt_tokens_reused")}
    assert delta["prompt_tokens"] == prompt_tokens(job)
    assert delta["prompt_tokens_evaluated"] + delta["prompt_tokens_reused"] == prompt_tokens(job)
    return job, delta


def test_a_prompt_sharing_a_prefix_prefills_only_the_rest(reusing, plain):
    first, delta = measured(reusing, chat("Name a ship."))
    assert delta["prompt_tokens_reused"] == 0  # nothing kept yet
    second, delta = measured(reusing, chat("Name a fish."))
    # The system prompt and the template around it come from the first request's cache.
    assert len(SYSTEM.split()) < delta["prompt_tokens_reused"] < prompt_tokens(second)
    assert 0 < delta["prompt_tokens_evaluated"] < prompt_tokens(second) / 2
    assert second.text() == run(plain, chat("Name a fish.")).text()
    assert counters(reusing)["prompt_cache_entries"] == 2  # neither extends the other: both kept


def test_the_next_turn_reuses_the_whole_previous_exchange(reusing, plain):
    turn1, _ = measured(reusing, chat("My name is Ada. Remember it."))
    turn2 = chat("My name is Ada. Remember it.", turn1.text(), "What is my name?")
    job, delta = measured(reusing, turn2)
    # Turn 1's prompt, and its reply as far as it tokenizes the same again.
    assert delta["prompt_tokens_reused"] >= prompt_tokens(turn1)
    assert job.text() == run(plain, turn2).text()
    # Turn 1's entry is a prefix of turn 2's: only the longer one is kept.
    assert counters(reusing)["prompt_cache_entries"] == 1


def test_the_same_prompt_again_prefills_one_token_and_answers_the_same(reusing, plain):
    request = chat("Tell me about a lighthouse.", max_tokens=12)
    first = run(reusing, request)
    again, delta = measured(reusing, request)
    assert delta["prompt_tokens_evaluated"] == 1  # its logits start the answer
    assert again.text() == first.text() == run(plain, request).text()


def test_seeded_and_penalised_requests_reuse_and_stay_reproducible(reusing, plain):
    seeded = chat("Sing.", max_tokens=10, temperature=1.0, seed=5)
    # Token WORD is biased to win, but the prompt holds it 12 times: a frequency penalty that sees the
    # whole prompt (reused or not) holds it back; one that saw only the prefilled rest would not.
    prompt = (2000, 3000) + (WORD,) * 12 + (4000,)
    biased = {"temperature": 0, "max_tokens": 6, "logit_bias": {WORD: 12}}
    free = GenerationRequest(sampling=resolve_sampling(biased, {}), prompt=prompt)
    penalised = GenerationRequest(sampling=resolve_sampling({**biased, "frequency_penalty": 2.0}, {}), prompt=prompt)
    expected = [run(plain, r).text() for r in (seeded, free, penalised)]
    assert expected[1] != expected[2]  # the penalty matters here
    run(reusing, chat("Sing."))
    run(reusing, free)  # both prompts are kept now
    for request, text in zip((seeded, free, penalised), expected):
        job, delta = measured(reusing, request)
        assert delta["prompt_tokens_evaluated"] == 1
        assert job.text() == text


def test_a_kept_cache_is_not_changed_by_a_sequence_that_extends_it(reusing):
    a = chat("Tell me about ships.", max_tokens=12)
    first_a = run(reusing, a).text()
    b = chat("Tell me about ships.", first_a, "And about boats?", max_tokens=12)
    first_b, delta = measured(reusing, b)  # starts from A's cache and writes its own tokens after it
    assert delta["prompt_tokens_reused"] > prompt_tokens(run(reusing, a)) / 2
    again_a, delta = measured(reusing, a)  # from B's cache now (it extends A's), cut back to A's prompt
    assert delta["prompt_tokens_evaluated"] == 1
    again_b, delta = measured(reusing, b)
    assert delta["prompt_tokens_evaluated"] == 1
    assert (again_a.text(), again_b.text()) == (first_a, first_b.text())


def test_concurrent_requests_sharing_a_prefix_answer_as_alone(reusing, plain):
    requests = [chat(f"Question {i}: what floats?", max_tokens=4 + 2 * i) for i in range(6)]
    expected = [run(plain, r).text() for r in requests]
    run(reusing, chat("Question 0: what floats?"))
    jobs = [RecordingJob(r) for r in requests]
    for job in jobs:
        reusing.admit(job)  # six jobs, four slots: the last two wait inside, then join
    run_until_done(reusing, *jobs)
    assert [j.text() for j in jobs] == expected
    assert counters(reusing)["prompt_tokens_reused"] > 0


def test_the_kept_caches_stay_within_their_bounds(mlx_tiny_path):
    few = MlxEngine.load(spec(mlx_tiny_path, prompt_cache_entries=2))
    try:
        prompts = [chat(f"Tell me about the colour {c}.") for c in ("red", "green", "blue")]
        for request in prompts:
            run(few, request)
        assert counters(few)["prompt_cache_entries"] == 2
        _, delta = measured(few, prompts[0])  # evicted (least recently used): only the shared start is reused
        assert delta["prompt_tokens_evaluated"] > 1
        _, delta = measured(few, prompts[2])  # still kept
        assert delta["prompt_tokens_evaluated"] == 1
    finally:
        few.close()

    small = MlxEngine.load(spec(mlx_tiny_path, prompt_cache_tokens=80))
    try:
        job = run(small, chat("Tell me about the colour red."))
        held = counters(small)["prompt_cache_tokens"]
        assert prompt_tokens(job) < held <= 80 and counters(small)["prompt_cache_entries"] == 1
        run(small, chat("Tell me about the colour green."))
        assert counters(small)["prompt_cache_entries"] == 1 and counters(small)["prompt_cache_tokens"] <= 80
        run(small, chat("Tell me, in many more words than fit in eighty tokens: " + "colours " * 60))
        assert counters(small)["prompt_cache_tokens"] <= 80  # too long to keep: not kept
    finally:
        small.close()


def test_reuse_off_keeps_nothing(plain):
    run(plain, chat("Name a ship."))
    _, delta = measured(plain, chat("Name a ship."))
    assert delta["prompt_tokens_reused"] == 0
    assert counters(plain)["prompt_cache_entries"] == 0 == counters(plain)["prompt_cache_tokens"]
