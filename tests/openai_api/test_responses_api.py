"""/v1/responses through the HTTP layer on the fake backend (tests/fakes.py, not a model): stored
responses (GET, DELETE, previous_response_id, retention, per-key visibility) and bad input."""

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from openai.types.responses import Response

from registry.models import StoredResponse, Tier
from registry.services import api_key_create
from tests.helpers import async_wait_until
from tests.openai_api.conftest import assert_error
from tests.sse import sse_events

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/responses"
HELLO = {"model": "fake", "input": "a b", "max_output_tokens": 3}


@pytest.fixture
def served(fake_tier, manager, settings):
    settings.ENABLE_CACHE = False
    return fake_tier


async def create(post, payload=HELLO, **headers):
    r = await post(URL, payload, **headers)
    assert r.status_code == 200, r.content
    return json.loads(r.content)


async def test_create_is_a_response_object_and_is_stored(post, client, served):
    body = await create(post, {**HELLO, "instructions": "Be brief.", "metadata": {"run": "1"}})
    response = Response.model_validate(body)  # the openai SDK's own model of the object
    assert response.id.startswith("resp_") and response.model == "fake" and response.store is True
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text.strip() == "w0 w1 w2" and response.usage.output_tokens == 3
    assert response.instructions == "Be brief." and response.metadata == {"run": "1"}
    got = await client.get(f"{URL}/{response.id}")
    assert got.status_code == 200 and json.loads(got.content) == body
    row = await StoredResponse.objects.aget(response_id=response.id)
    assert row.input_items == [{"type": "message", "role": "user", "content": "a b"}]  # instructions don't carry over


async def test_store_false_keeps_nothing(post, client, served):
    body = await create(post, {**HELLO, "store": False})
    assert body["store"] is False
    assert_error(await client.get(f"{URL}/{body['id']}"), 404, code="response_not_found", param="response_id")
    assert_error(await post(URL, {**HELLO, "previous_response_id": body["id"]}), 404, param="previous_response_id")


async def test_previous_response_id_resolves_the_whole_conversation(post, served):
    first = await create(post)
    second = await create(post, {**HELLO, "input": [{"role": "user", "content": [{"type": "input_text", "text": "c"}]}],
                                 "previous_response_id": first["id"]})
    third = await create(post, {**HELLO, "input": "d", "previous_response_id": second["id"]})
    row = await StoredResponse.objects.aget(response_id=third["id"])
    contents = [item.get("content") for item in row.input_items]
    assert [i["type"] for i in row.input_items] == ["message"] * 5
    assert contents[0] == "a b" and contents[2] == [{"type": "input_text", "text": "c"}] and contents[4] == "d"
    assert contents[1][0]["text"].strip() == "w0 w1 w2" and contents[3][0]["type"] == "output_text"  # the answers in between
    assert third["previous_response_id"] == second["id"]
    # the fake counts the prompt's words: the whole conversation reached the model
    assert third["usage"]["input_tokens"] > second["usage"]["input_tokens"] > first["usage"]["input_tokens"]


async def test_delete(post, client, served):
    body = await create(post)
    deleted = await client.delete(f"{URL}/{body['id']}")
    assert deleted.status_code == 200 and json.loads(deleted.content) == {"id": body["id"], "object": "response", "deleted": True}
    assert_error(await client.get(f"{URL}/{body['id']}"), 404, code="response_not_found")
    assert_error(await client.delete(f"{URL}/{body['id']}"), 404, code="response_not_found")


async def test_retention(post, client, served, settings):
    settings.RESPONSES_RETENTION_DAYS = 1
    body = await create(post)
    row = await StoredResponse.objects.aget(response_id=body["id"])
    assert timedelta(hours=23) < row.expires_at - timezone.now() <= timedelta(days=1)
    await StoredResponse.objects.filter(pk=row.pk).aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(await client.get(f"{URL}/{body['id']}"), 404, code="response_not_found")
    assert_error(await post(URL, {**HELLO, "previous_response_id": body["id"]}), 404, code="response_not_found")
    await create(post)  # storing another purges the expired row
    assert not await StoredResponse.objects.filter(pk=row.pk).aexists()


async def test_with_api_keys_a_key_sees_only_its_own(post, client, served, settings):
    settings.API_KEYS_REQUIRED = True
    (_, mine), (_, theirs) = [await sync_to_async(api_key_create)(name=n) for n in ("mine", "theirs")]
    me, them = {"headers": {"Authorization": f"Bearer {mine}"}}, {"headers": {"Authorization": f"Bearer {theirs}"}}
    body = await create(post, HELLO, **me)
    assert (await client.get(f"{URL}/{body['id']}", **me)).status_code == 200
    assert_error(await client.get(f"{URL}/{body['id']}", **them), 404, code="response_not_found")
    assert_error(await post(URL, {**HELLO, "previous_response_id": body["id"]}, **them), 404, param="previous_response_id")
    assert_error(await client.delete(f"{URL}/{body['id']}", **them), 404)
    assert (await client.get(f"{URL}/{body['id']}", **me)).status_code == 200  # still there
    await create(post, {**HELLO, "previous_response_id": body["id"]}, **me)
    assert_error(await client.get(f"{URL}/{body['id']}"), 401)


@pytest.mark.parametrize("tool", ["web_search", "web_search_preview", "file_search", "computer_use_preview", "code_interpreter", "mcp"])
async def test_builtin_tools_are_refused_by_name(post, served, tool):
    error = assert_error(await post(URL, {**HELLO, "tools": [{"type": tool, "extra": 1}]}), 400, code="unsupported_parameter",
                         param="tools.0.type")
    assert f"'{tool}'" in error["message"]


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"input": 5}, "input"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input.0.call_id"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]}, "input.0.content.0"),
        ({"input": []}, "input"),
        ({"input": [{"role": "user", "content": [{"type": []}]}]}, "input.0.content.0.type"),  # once a 500 (schemathesis)
        ({"input": [{"type": {}, "role": "user", "content": "x"}]}, "input.0.type"),
        ({"temperature": 3}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools.0.name"),
        ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True},
                   "verbosity": "low"}}, "text.verbosity"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"previous_response_id": "resp_nope"}, "previous_response_id"),
    ],
)
async def test_bad_input_is_an_openai_error(post, served, payload, param):
    r = await post(URL, {**HELLO, **payload})
    assert r.status_code in (400, 404)
    assert_error(r, r.status_code, param=param)


async def test_unknown_model_and_wrong_kind(post, served):
    await sync_to_async(Tier.objects.create)(name="emb", kind="embedding", backend="fake", model_path="e.bin")
    assert_error(await post(URL, {**HELLO, "model": "nope"}), 404, code="model_not_found")
    assert_error(await post(URL, {**HELLO, "model": "emb"}), 400, code="model_not_supported")


def test_retention_must_be_positive(settings):
    from openai_api.checks import responses_settings

    settings.RESPONSES_RETENTION_DAYS = 0
    assert [e.id for e in responses_settings()] == ["openai_api.E101"]
    settings.RESPONSES_RETENTION_DAYS = 0.5
    assert responses_settings() == []


def test_access_log_label():
    from openai_api.access_log import endpoint_of

    assert endpoint_of("/v1/responses") == endpoint_of("/v1/responses/resp_1") == "responses"


# --- the shared choice path: single flight, reasoning, keep_alive -------------------------------
async def test_identical_responses_arriving_together_generate_once(post, manager, settings):
    from openai_api.cache import response_cache

    settings.ENABLE_CACHE = True
    await Tier.objects.acreate(name="fake", backend="fake", model_path="slow")
    await create(post, {"model": "fake", "input": "warm", "max_output_tokens": 1})
    before = manager.status()["fake"].requests
    ask = {"model": "fake", "input": "same question", "temperature": 0, "max_output_tokens": 6}
    results = await asyncio.gather(*[post(URL, ask) for _ in range(3)])
    assert sorted(r["X-Cache"] for r in results) == ["HIT", "HIT", "MISS"]
    assert manager.status()["fake"].requests - before == 1 and response_cache.inflight == {}
    outputs = [json.loads(r.content) for r in results]
    assert len({o["id"] for o in outputs}) == 3 and len({o["output"][0]["content"][0]["text"] for o in outputs}) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_comes_back_as_a_reasoning_item_live_and_replayed(post, manager, settings, stream):
    settings.ENABLE_CACHE = True
    await Tier.objects.acreate(name="thinker", backend="fake", model_path="thinker")
    ask = {"model": "thinker", "input": "2+2?", "temperature": 0, "stream": stream}
    answers = []
    for expected in ("MISS", "HIT"):
        r = await post(URL, ask)
        assert r["X-Cache"] == expected
        if stream:
            events = [e for e in sse_events(b"".join([c async for c in r.streaming_content])) if e]
            assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
            answers.append(Response.model_validate(events[-1]["response"]))
        else:
            answers.append(Response.model_validate_json(r.content))
    live, hit = answers
    for response in answers:
        assert [item.type for item in response.output] == ["reasoning", "message"]
        assert response.output[0].content[0].text == "Let me think."
    assert hit.output_text == live.output_text != "" and hit.id != live.id


async def test_keep_alive_is_honoured(post, served, manager):
    await create(post, {**HELLO, "keep_alive": "7s"})
    assert manager.status()["fake"].keep_alive == 7.0
    await create(post, {**HELLO, "keep_alive": 0})
    await async_wait_until(lambda: "fake" not in manager.status(), "the tier to unload")  # unloaded tiers are not listed
