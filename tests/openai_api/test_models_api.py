import json

import pytest

from registry.models import Tier
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


async def test_loaded_after_first_use(client, post, fake_tier, manager):
    await post("/v1/chat/completions", {"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
    card = json.loads((await client.get("/v1/models/fake")).content)
    assert card["loaded"] is True and card["state"] == "ready" and card["load_time"] >= 0


async def test_retrieve_by_alias_and_unknown(client, fake_tier):
    assert json.loads((await client.get("/v1/models/pretend")).content)["id"] == "fake"
    assert_error(await client.get("/v1/models/nope"), 404, code="model_not_found")


async def test_health_never_loads_a_model(client, fake_tier, manager):
    body = json.loads((await client.get("/health")).content)
    assert body == {"status": "ok", "tiers": {"fake": {"loaded": False, "state": "unloaded"}}, "loaded": []}
    assert manager.status() == {}


async def test_openapi_docs_are_served(client):
    assert (await client.get("/v1/docs")).status_code == 200
    schema = json.loads((await client.get("/v1/openapi.json")).content)
    assert "/v1/chat/completions" in schema["paths"]
