"""The response cache through the HTTP layer (fake backend: this tests keying, headers, SSE
replay and single flight, not a model) and its pure pieces."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from openai_api.cache import response_cache
from openai_api.serving.results import ChoiceResult, GenerationResult, ToolCallResult
from registry.models import CachedResponse, Tier
from registry.services import cached_response_clear
from inference.events import TokenLogprob
from tests.helpers import async_wait_until
from tests.sse import merged, shape, skeleton, sse_events, without_ids

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"


@pytest.fixture
def tier(manager):
    response_cache.clear()
    response_cache.counters.clear()
    return Tier.objects.create(name="fake", backend="fake", model_path="fake.gguf")


def chat_body(**extra):
    return {"model": "fake", "messages": [{"role": "user", "content": "hi there"}], "temperature": 0, "max_tokens": 3, **extra}


async def post(path, body, **headers):
    return await AsyncClient().post(path, json.dumps(body), content_type="application/json", headers=headers)


def stream_text(content: bytes) -> str:
    events = [e for e in sse_events(content) if e]
    return "".join((c.get("delta") or {}).get("content") or c.get("text") or "" for e in events for c in e["choices"])


async def test_hit_after_miss_is_the_same_answer_and_not_generated_again(tier):
    first = await post(CHAT, chat_body())
    second = await post(CHAT, chat_body())
    assert (first["X-Cache"], second["X-Cache"]) == ("MISS", "HIT")
    assert json.loads(first.content)["choices"] == json.loads(second.content)["choices"]
    assert await CachedResponse.objects.acount() == 1


async def test_sampled_requests_are_not_cached_by_default_but_seeded_ones_are(tier):
    assert (await post(CHAT, chat_body(temperature=0.8)))["X-Cache"] == "MISS"
    assert (await post(CHAT, chat_body(temperature=0.8)))["X-Cache"] == "MISS"
    await post(CHAT, chat_body(temperature=0.8, seed=7))
    assert (await post(CHAT, chat_body(temperature=0.8, seed=7)))["X-Cache"] == "HIT"


async def test_policy_all_caches_sampled_requests(tier, settings):
    settings.CACHE_REQUESTS = "all"
    await post(CHAT, chat_body(temperature=0.8))
    assert (await post(CHAT, chat_body(temperature=0.8)))["X-Cache"] == "HIT"


async def test_no_cache_skips_the_read_but_writes_and_no_store_does_neither(tier):
    await post(CHAT, chat_body(), **{"Cache-Control": "no-store"})
    assert await CachedResponse.objects.acount() == 0
    assert (await post(CHAT, chat_body(), **{"Cache-Control": "no-cache"}))["X-Cache"] == "MISS"
    assert await CachedResponse.objects.acount() == 1
    assert (await post(CHAT, chat_body(), **{"Cache-Control": "no-cache"}))["X-Cache"] == "MISS"
    assert (await post(CHAT, chat_body()))["X-Cache"] == "HIT"


async def test_every_parameter_and_the_tier_config_are_in_the_key(tier):
    await post(CHAT, chat_body())
    assert (await post(CHAT, chat_body(max_tokens=4)))["X-Cache"] == "MISS"
    assert (await post(CHAT, chat_body(stop=["x"])))["X-Cache"] == "MISS"
    tier.max_tokens = 5  # a tier edit changes config_key: old entries are never served
    await tier.asave()
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"


async def test_disabled_globally_or_per_tier(tier, settings):
    settings.ENABLE_CACHE = False
    await post(CHAT, chat_body())
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"
    settings.ENABLE_CACHE = True
    tier.cache_enabled = False
    await tier.asave()
    await post(CHAT, chat_body())
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"
    assert await CachedResponse.objects.acount() == 0


async def test_a_streamed_miss_is_stored_and_replayed_as_sse_and_as_json(tier):
    miss = await post(CHAT, chat_body(stream=True))
    miss_content = b"".join([c async for c in miss.streaming_content])
    assert miss["X-Cache"] == "MISS"
    assert b'"usage"' not in miss_content  # the client did not ask for include_usage
    hit = await post(CHAT, chat_body(stream=True, stream_options={"include_usage": True}))
    hit_content = b"".join([c async for c in hit.streaming_content])
    assert hit["X-Cache"] == "HIT" and hit["Content-Type"] == "text/event-stream"
    assert stream_text(hit_content) == stream_text(miss_content) == "w0 w1 w2 "
    assert hit_content.endswith(b"data: [DONE]\n\n")
    assert [e for e in sse_events(hit_content) if e][-1]["usage"]["completion_tokens"] == 3
    as_json = json.loads((await post(CHAT, chat_body())).content)
    assert as_json["choices"][0]["message"]["content"] == "w0 w1 w2 "
    assert as_json["usage"]["completion_tokens"] == 3


async def test_completions_are_cached_too(tier):
    body = {"model": "fake", "prompt": "say", "temperature": 0, "max_tokens": 2}
    await post("/v1/completions", body)
    hit = await post("/v1/completions", {**body, "stream": True})
    assert hit["X-Cache"] == "HIT"
    assert stream_text(b"".join([c async for c in hit.streaming_content])) == "w0 w1 "


async def test_identical_requests_arriving_together_generate_once(manager, settings):
    response_cache.clear()
    await Tier.objects.acreate(name="fake", backend="fake", model_path="slow")
    await post(CHAT, {**chat_body(), "max_tokens": 1, "messages": [{"role": "user", "content": "warm"}]})
    manager_requests = lambda: manager.status()["fake"].requests  # noqa: E731
    before = manager_requests()
    results = await asyncio.gather(*[post(CHAT, chat_body(max_tokens=6)) for _ in range(3)])
    assert sorted(r["X-Cache"] for r in results) == ["HIT", "HIT", "MISS"]
    assert manager_requests() - before == 1
    assert len({json.dumps(json.loads(r.content)["choices"]) for r in results}) == 1


async def test_clearing_a_tier_empties_memory_and_database(tier):
    await post(CHAT, chat_body())
    await sync_to_async(cached_response_clear)(tier="fake")
    assert response_cache.memory_stats() == {}
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"


def test_a_result_round_trips_through_its_stored_form():
    result = GenerationResult(
        choices=[
            ChoiceResult(0, text="", reasoning="hmm", tool_calls=[ToolCallResult("call_1", "get", '{"a": 1}')],
                         finish_reason="tool_calls", completion_tokens=7),
            ChoiceResult(1, text="hé", finish_reason="length", completion_tokens=2,
                         logprobs=[TokenLogprob("hé", -0.5, [104, 195, 169], [("hé", -0.5, [104, 195, 169])])]),
        ],
        prompt_tokens=5, relaxed=("uniqueItems at #",),
    )
    stored = json.loads(json.dumps(result.to_json()))
    assert GenerationResult.from_json(stored) == result
    with pytest.raises(ValueError):
        GenerationResult.from_json({**stored, "v": 0})  # another version's form is never read


async def test_the_lru_evicts_to_the_database_which_still_answers(tier, settings):
    settings.CACHE_MAX_SIZE = 1
    await post(CHAT, chat_body())
    await post(CHAT, chat_body(max_tokens=2))  # evicts the first from memory
    assert sum(m["entries"] for m in response_cache.memory_stats().values()) == 1
    assert (await post(CHAT, chat_body()))["X-Cache"] == "HIT"  # from the database


async def test_memory_only_when_not_persisted(tier, settings):
    settings.CACHE_PERSIST_TO_DISK = False
    settings.CACHE_MAX_SIZE = 1
    await post(CHAT, chat_body())
    assert (await post(CHAT, chat_body()))["X-Cache"] == "HIT"
    assert await CachedResponse.objects.acount() == 0
    await post(CHAT, chat_body(max_tokens=2))
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"  # evicted, and nowhere else


async def test_expired_entries_are_not_served_and_can_be_cleared(tier):
    await post(CHAT, chat_body())
    for entry in response_cache._entries.values():  # age the entry instead of sleeping
        entry.expires = 0
    await CachedResponse.objects.aupdate(expires_at="2000-01-01T00:00:00Z")
    assert (await post(CHAT, chat_body()))["X-Cache"] == "MISS"
    await CachedResponse.objects.aupdate(expires_at="2000-01-01T00:00:00Z")
    assert await sync_to_async(cached_response_clear)(expired_only=True) == 1


async def test_errors_are_not_cached_and_keep_the_envelope(tier):
    bad = await post(CHAT, chat_body(model="nope"))
    assert bad.status_code == 404 and json.loads(bad.content)["error"]["code"] == "model_not_found"
    long = await post(CHAT, chat_body(messages=[{"role": "user", "content": "w " * 100}]))
    assert long.status_code == 400 and await CachedResponse.objects.acount() == 0


async def test_cache_stats_endpoint(tier, settings):
    settings.INTERNAL_TOKEN = "t"
    await post(CHAT, chat_body())
    await post(CHAT, chat_body())
    assert (await AsyncClient().get("/internal/cache/stats")).status_code == 401
    stats = json.loads((await AsyncClient().get("/internal/cache/stats", headers={"Authorization": "Bearer t"})).content)
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 1, 0.5)
    assert stats["memory_entries"] == stats["database_entries"] == 1
    assert stats["memory_bytes"] == stats["database_bytes"] > 0
    assert stats["tiers"]["fake"]["hit_rate"] == 0.5 and stats["tiers"]["fake"]["database_entries"] == 1


async def test_several_choices_round_trip_through_the_cache(tier):
    miss = await post(CHAT, chat_body(n=2, seed=1, stream=True))
    streamed = [e for e in sse_events(b"".join([c async for c in miss.streaming_content])) if e]
    hit = json.loads((await post(CHAT, chat_body(n=2, seed=1))).content)
    assert [c["index"] for c in hit["choices"]] == [0, 1]
    assert [c["finish_reason"] for c in hit["choices"]] == ["length", "length"]
    assert {c["index"] for e in streamed for c in e["choices"]} == {0, 1}
    assert hit["usage"]["completion_tokens"] == 6


async def test_a_stream_the_client_abandons_is_not_stored(tier, manager):
    tier.model_path = "slow"  # 0.02 s per token
    await tier.asave()
    response = await post(CHAT, chat_body(stream=True, max_tokens=200))
    chunks: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        async for chunk in response.streaming_content:
            await chunks.put(chunk)

    reader = asyncio.ensure_future(read())
    await chunks.get()
    reader.cancel()  # the client leaves (Django's handler cancels the response task on a disconnect)
    with pytest.raises(asyncio.CancelledError):
        await reader
    response.close()  # as Django's handler does once the client is gone
    await async_wait_until(lambda: manager.status()["fake"].in_flight == 0, "the generation to stop")
    assert manager.status()["fake"].recent[-1].completion_tokens < 200  # cut off, not run to the end
    assert await CachedResponse.objects.acount() == 0 and response_cache.memory_stats() == {}
    assert response_cache.inflight == {}  # nobody would wait for it either


async def answer(path, body):
    """A MISS or HIT: (X-Cache, whole object or SSE events)."""
    response = await post(path, body)
    if body.get("stream"):
        return response["X-Cache"], sse_events(b"".join([c async for c in response.streaming_content]))
    return response["X-Cache"], json.loads(response.content)


@pytest.mark.parametrize("path, body", [
    (CHAT, chat_body(n=2, seed=3)),
    (CHAT, chat_body(logprobs=True, top_logprobs=2, stream_options={"include_usage": True})),
    ("/v1/completions", {"model": "fake", "prompt": ["a b", "c"], "n": 2, "max_tokens": 3, "temperature": 0, "echo": True}),
    ("/v1/completions", {"model": "fake", "prompt": "a b", "max_tokens": 3, "temperature": 0, "logprobs": 2,
                         "stream_options": {"include_usage": True}}),
])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_hit_is_the_live_answer_through_the_same_renderer(tier, path, body, stream):
    body = {**body, "stream": stream} if stream else {k: v for k, v in body.items() if k != "stream_options"}
    miss_cache, live = await answer(path, body)
    hit_cache, hit = await answer(path, body)
    assert (miss_cache, hit_cache) == ("MISS", "HIT")
    if stream:
        assert shape(hit) == shape(live)
        assert merged(hit) == merged(live)
        assert hit[-1] is None and (hit[-2].get("usage") is not None) == ("stream_options" in body)
    else:
        assert without_ids(hit) == without_ids(live)
        assert skeleton(hit) == skeleton(live)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_thinking_answer_replays_its_reasoning(manager, stream):
    response_cache.clear()
    await Tier.objects.acreate(name="thinker", backend="fake", model_path="thinker")
    body = {"model": "thinker", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0, "stream": stream}
    (miss, live), (hit_mark, hit) = await answer(CHAT, body), await answer(CHAT, body)
    assert (miss, hit_mark) == ("MISS", "HIT")
    if stream:
        assert merged(hit) == merged(live) and merged(hit)[0]["reasoning"] == "Let me think."
        assert shape(hit) == shape(live)
    else:
        assert without_ids(hit) == without_ids(live)
        assert hit["choices"][0]["message"]["reasoning_content"] == "Let me think."


async def test_the_stored_form_is_the_neutral_result_not_a_response(tier):
    await post(CHAT, chat_body())
    row = await CachedResponse.objects.aget()
    assert set(row.response) == {"v", "prompt_tokens", "relaxed", "choices"}
    assert row.response["choices"][0]["text"] == "w0 w1 w2 "


async def test_a_follower_of_a_streamed_leader_gets_its_stored_answer(tier, manager):
    tier.model_path = "slow"  # 0.02 s per token
    await tier.asave()
    leader = await post(CHAT, chat_body(stream=True, max_tokens=20))
    follower = asyncio.ensure_future(post(CHAT, chat_body(max_tokens=20)))
    await async_wait_until(lambda: response_cache.waiting == 1, "the follower to wait for the leader")
    streamed = sse_events(b"".join([c async for c in leader.streaming_content]))
    reply = await asyncio.wait_for(follower, 30)
    assert reply["X-Cache"] == "HIT"
    assert json.loads(reply.content)["choices"][0]["message"]["content"] == merged(streamed)[0]["text"]
    assert response_cache.inflight == {}
