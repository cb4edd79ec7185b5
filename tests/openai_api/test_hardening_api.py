"""Bad input and limits through the HTTP layer (Django's async client, fake backend): findings 1,
2 and 9 of issue 11, the per-request caps, and the deadline and queue limits as clients see them."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from inference.admission import gate_for
from openai_api.cache import response_cache
from registry.models import CachedResponse, Tier
from tests.openai_api.conftest import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

CHAT, COMPLETIONS, EMBEDDINGS, RERANK = "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rerank"


@pytest.fixture
def slow_tier(manager):
    response_cache.clear()
    return Tier.objects.create(name="slowpoke", backend="fake", model_path="slow")


# --- 1. lone surrogates -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, raw, param",
    [
        (CHAT, '{"model": "fake", "messages": [{"role": "user", "content": "a\\ud800b"}]}', "messages.0.content"),
        (COMPLETIONS, '{"model": "fake", "prompt": ["ok", "\\udfff"]}', "prompt.1"),
        (EMBEDDINGS, '{"model": "fake", "input": "\\ud83d"}', "input"),
        (RERANK, '{"model": "fake", "query": "q", "documents": [{"text": "\\udc00"}]}', "documents.0.text"),
        (CHAT, '{"model": "fake", "messages": [{"role": "user", "content": "x"}], "metadata": {"\\ud800": "v"}}', "metadata"),
    ],
)
async def test_lone_surrogates_are_a_400_naming_the_place(post, fake_tier, manager, path, raw, param):
    error = assert_error(await post(path, None, raw=raw), 400, param=param)
    assert "lone UTF-16 surrogate" in error["message"]


async def test_a_valid_surrogate_pair_is_one_character_and_fine(post, fake_tier, manager):
    raw = '{"model": "fake", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}], "max_tokens": 1}'
    assert (await post(CHAT, None, raw=raw)).status_code == 200


@pytest.mark.parametrize(
    "raw, words",
    [
        ('{"model": "fake", "prompt": "a", "temperature": NaN}', "'NaN' is not a JSON value"),
        ('{"model": "fake", "prompt": "a", "max_tokens": Infinity}', "'Infinity' is not a JSON value"),
        ('{"model": "fake", "prompt": ' + "[" * 10_000 + "]" * 10_000 + "}", "MAX_JSON_DEPTH"),
        ('{"model": "fake", "prompt": ' + "[" * 150 + "]" * 150 + "}", "MAX_JSON_DEPTH"),
        (b'{"model": "fake", "prompt": "\xff\xfe"}', "not valid UTF-8"),
    ],
)
async def test_what_python_json_accepts_but_json_is_not(post, fake_tier, manager, raw, words):
    error = assert_error(await post(COMPLETIONS, None, raw=raw), 400)
    assert words in error["message"]


# --- 2. empty prompts ---------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", ["", ["ok", ""], [], [[1], []]])
async def test_empty_prompts_are_a_400(post, fake_tier, manager, prompt):
    error = assert_error(await post(COMPLETIONS, {"model": "fake", "prompt": prompt}), 400, param="prompt")
    assert "empty" in error["message"]


# --- caps ---------------------------------------------------------------------------------------
async def test_prompts_times_n_is_capped(post, fake_tier, manager, settings):
    settings.COMPLETIONS_MAX_GENERATIONS = 8
    error = assert_error(await post(COMPLETIONS, {"model": "fake", "prompt": ["a"] * 3, "n": 3}), 400, param="prompt")
    assert "9 generations" in error["message"] and "COMPLETIONS_MAX_GENERATIONS" in error["message"]
    assert (await post(COMPLETIONS, {"model": "fake", "prompt": ["a"] * 4, "n": 2, "max_tokens": 1})).status_code == 200


# --- 9. no server paths in errors ---------------------------------------------------------------
async def test_a_missing_model_file_is_named_without_its_directory(post, client, manager):
    await Tier.objects.acreate(name="ghost", backend="llamacpp", model_path="/srv/private/models/ghost.gguf")
    error = assert_error(await post(CHAT, {"model": "ghost", "messages": [{"role": "user", "content": "x"}]}), 503)
    assert "ghost.gguf" in error["message"] and "/srv/private" not in error["message"]
    health = json.loads((await client.get("/health")).content)["tiers"]["ghost"]
    assert health["state"] == "failed" and "/srv/private" not in health["error"] and health["next_retry_at"]
    again = assert_error(await post(CHAT, {"model": "ghost", "messages": [{"role": "user", "content": "x"}]}), 503)
    assert "next load attempt is in" in again["message"]  # backoff: not loaded again


# --- the deadline -------------------------------------------------------------------------------
async def test_deadline_cuts_an_answer_short_with_length_and_it_is_not_cached(post, slow_tier, settings):
    settings.REQUEST_TIMEOUT_SECONDS = 0.3
    body = {"model": "slowpoke", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000, "temperature": 0}
    for _ in range(2):  # the second is a MISS again: the first was never stored
        r = await post(CHAT, body)
        assert r.status_code == 200 and r["X-Cache"] == "MISS"
        answer = json.loads(r.content)
        assert answer["choices"][0]["finish_reason"] == "length"
        assert 0 < answer["usage"]["completion_tokens"] < 5000 and answer["choices"][0]["message"]["content"]
    assert await sync_to_async(CachedResponse.objects.count)() == 0


async def test_deadline_before_a_later_prompt_starts_keeps_the_earlier_answers(post, fake_tier, monkeypatch):
    """Several prompts, the deadline passing before the later ones start (forced here by making
    the later openings time out): 200, the first prompt's answers kept, every choice present."""
    from llmservice.errors import DeadlineExceeded
    from openai_api.serving import choices as completions

    real_open = completions.open_generation
    opened = []

    async def open_then_time_out(spec, request, **kwargs):
        opened.append(request.prompt)
        if len(opened) > 1:
            raise DeadlineExceeded("deadline")
        return await real_open(spec, request, **kwargs)

    monkeypatch.setattr(completions, "open_generation", open_then_time_out)
    body = {"model": "fake", "prompt": ["a", "b", "c"], "n": 2, "max_tokens": 3}
    r = await post(COMPLETIONS, body)
    assert r.status_code == 200, r.content
    choices = json.loads(r.content)["choices"]
    assert [c["index"] for c in choices] == list(range(6))
    assert choices[0]["text"] and choices[1]["text"] and not choices[5]["text"]


async def test_deadline_cuts_a_stream_short_with_length(post, slow_tier, settings):
    settings.REQUEST_TIMEOUT_SECONDS = 0.3
    body = {"model": "slowpoke", "prompt": "x", "max_tokens": 5000, "stream": True, "temperature": 0}
    r = await post(COMPLETIONS, body)
    frames = b"".join([c async for c in r.streaming_content]).decode().split("\n\n")
    finishes = [json.loads(f[6:])["choices"][0]["finish_reason"] for f in frames if f.startswith("data: {")]
    assert finishes[-1] == "length" and frames[-2] == "data: [DONE]"
    assert await sync_to_async(CachedResponse.objects.count)() == 0


async def test_deadline_with_nothing_produced_is_a_504(post, slow_tier, settings):
    blocker = asyncio.create_task(post(COMPLETIONS, {"model": "slowpoke", "prompt": "x", "max_tokens": 40}))
    await _wait_running("slowpoke")
    settings.REQUEST_TIMEOUT_SECONDS = 0.05
    assert_error(await post(COMPLETIONS, {"model": "slowpoke", "prompt": "y", "max_tokens": 4}), 504, code="timeout")
    settings.REQUEST_TIMEOUT_SECONDS = 300
    assert (await blocker).status_code == 200


# --- queue limits -------------------------------------------------------------------------------
async def test_a_full_queue_is_a_429_with_retry_after(post, slow_tier):
    slow_tier.max_waiting = 0
    await slow_tier.asave()  # as the admin saves it (the tier snapshot follows saves)
    blocker = asyncio.create_task(post(COMPLETIONS, {"model": "slowpoke", "prompt": "x", "max_tokens": 40}))
    await _wait_running("slowpoke")
    r = await post(COMPLETIONS, {"model": "slowpoke", "prompt": "y", "max_tokens": 1})
    error = assert_error(r, 429, code="rate_limit_exceeded")
    assert int(r["Retry-After"]) >= 1 and "QUEUE_MAX_WAITING" in error["message"]
    assert (await blocker).status_code == 200


async def test_waiting_too_long_is_a_429(post, slow_tier):
    await post(COMPLETIONS, {"model": "slowpoke", "prompt": "warm", "max_tokens": 1})
    slow_tier.max_queue_wait_seconds = 0.05
    await slow_tier.asave()
    blocker = asyncio.create_task(post(COMPLETIONS, {"model": "slowpoke", "prompt": "x", "max_tokens": 40}))
    await _wait_running("slowpoke")
    r = await post(CHAT, {"model": "slowpoke", "messages": [{"role": "user", "content": "y"}], "stream": True})
    error = assert_error(r, 429)  # a stream is refused before any byte
    assert "QUEUE_MAX_WAIT_SECONDS" in error["message"] and r["Retry-After"]
    assert (await blocker).status_code == 200


async def _wait_running(tier: str) -> None:
    for _ in range(3000):
        if gate_for(tier).counts()[1]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first request never started")
