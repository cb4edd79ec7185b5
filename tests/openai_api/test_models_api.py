import asyncio
import json

import pytest

from registry.models import Tier
from tests.fakes import FakeBackend
from tests.helpers import async_wait_until
from tests.openai_api.conftest import assert_error

pytestmark = pytest.mark.django_db(transaction=True)


async def test_models_list_shows_tiers_with_extension_fields(client, fake_tier, manager):
    await Tier.objects.acreate(name="off", backend="fake", model_path="x", enabled=False)
    body = json.loads((await client.get("/v1/models")).content)
    assert body["object"] == "list"
    (card,) = body["data"]  # disabled tiers are not listed
    assert card["id"] == "fake" and card["object"] == "model" and card["owned_by"] == "llmservice"
    assert isinstance(card["created"], int)
    assert card["loaded"] is False and card["state"] == "unloaded" and card["load_time"] is None
    assert card["aliases"] == ["pretend"] and card["backend"] == "fake" and card["kind"] == "chat"
    assert card["context_length"] == 64  # the fake backend's default n_ctx option: the tier sets none


async def test_context_length_is_the_tiers_own_window(client, fake_tier, settings):
    fake_tier.options = {"n_ctx": 512}
    await fake_tier.asave()
    await Tier.objects.acreate(name="vectors", kind="embedding", backend="fake", model_path="x")
    cards = {c["id"]: c for c in json.loads((await client.get("/v1/models")).content)["data"]}
    assert cards["fake"]["context_length"] == 512
    assert cards["vectors"]["context_length"] is None
    assert json.loads((await client.get("/v1/models/fake")).content)["context_length"] == 512


async def test_loaded_after_first_use(client, post, fake_tier, manager):
    await post("/v1/chat/completions", {"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    card = json.loads((await client.get("/v1/models/fake")).content)
    assert card["loaded"] is True and card["state"] == "ready" and card["load_time"] >= 0


async def test_retrieve_by_alias_and_unknown(client, fake_tier):
    assert json.loads((await client.get("/v1/models/pretend")).content)["id"] == "fake"
    assert_error(await client.get("/v1/models/nope"), 404, code="model_not_found")


async def test_health_never_loads_a_model(client, fake_tier, manager):
    body = json.loads((await client.get("/health")).content)
    assert body == {
        "status": "ok",
        "tiers": {"fake": {"loaded": False, "state": "unloaded"}},
        "loaded": [],
        "state": "serving",
        "shutdown_in_seconds": None,  # auto-shutdown is off
    }
    assert manager.status() == {}


async def test_openapi_docs_are_served(client):
    assert (await client.get("/v1/docs")).status_code == 200
    schema = json.loads((await client.get("/v1/openapi.json")).content)
    assert "/v1/chat/completions" in schema["paths"]


# --- The states /v1/models reports: loading, ready, failed, retiring, unloaded ------------------
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "x"}]


async def card(client, name="fake") -> dict:
    return json.loads((await client.get(f"/v1/models/{name}")).content)


async def test_loading_until_the_load_ends_then_ready(client, post, fake_tier, manager):
    fake_tier.model_path = "gated"  # the fake backend's load waits for the test to open its gate
    await fake_tier.asave()
    pending = asyncio.ensure_future(post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 1}))
    await async_wait_until(lambda: "fake" in manager.status(), "the load to start")
    during = await card(client)
    assert (during["state"], during["loaded"], during["load_time"]) == ("loading", False, None)
    health = json.loads((await client.get("/health")).content)
    assert health["tiers"]["fake"] == {"loaded": False, "state": "loading"} and health["loaded"] == []
    FakeBackend.load_gate.set()
    assert (await pending).status_code == 200
    after = await card(client)
    assert (after["state"], after["loaded"]) == ("ready", True) and after["load_time"] >= 0


async def test_failed_after_a_model_cannot_load(client, post, manager, db, tmp_path):
    # The real llama.cpp backend, pointed at a file that does not exist.
    await Tier.objects.acreate(name="broken", backend="llamacpp", model_path=str(tmp_path / "nope.gguf"))
    assert_error(await post(CHAT, {"model": "broken", "messages": USER}), 503, code="model_unavailable")
    failed = await card(client, "broken")
    assert (failed["state"], failed["loaded"], failed["load_time"]) == ("failed", False, None)


async def test_retiring_while_an_unloaded_tier_finishes_its_request_then_unloaded(client, post, fake_tier, manager, settings):
    settings.INTERNAL_TOKEN = "t"
    fake_tier.model_path = "slow"  # 0.02 s per token: 1000 tokens outlast the test
    await fake_tier.asave()
    response = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 1000, "stream": True})
    chunks: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        async for chunk in response.streaming_content:
            await chunks.put(chunk)

    reader = asyncio.ensure_future(read())
    await chunks.get()  # the role chunk: the request is running
    unloaded = await client.post("/internal/unload", json.dumps({"tiers": ["fake"]}), content_type="application/json",
                                 headers={"Authorization": "Bearer t"})
    assert json.loads(unloaded.content) == {"unloaded": ["fake"], "not_loaded": []}
    retiring = await card(client)
    assert (retiring["state"], retiring["loaded"]) == ("retiring", False)
    assert (retiring["running"], retiring["queued"], retiring["slots"], retiring["kv_cache_usage"]) == (1, 0, 1, None)
    health = json.loads((await client.get("/health")).content)["tiers"]["fake"]
    assert (health["state"], health["running"], health["queued"]) == ("retiring", 1, 0)
    assert b"w0 " in await chunks.get()  # its request goes on
    reader.cancel()  # the client leaves (Django's handler cancels the response task on a disconnect)
    with pytest.raises(asyncio.CancelledError):
        await reader
    await async_wait_until(lambda: "fake" not in manager.status(), "the retired model to close")
    assert (await card(client))["state"] == "unloaded" and FakeBackend.closes == 1
