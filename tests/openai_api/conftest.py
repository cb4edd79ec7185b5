import json

import pytest
from django.test import AsyncClient

from registry.models import Tier


@pytest.fixture
def fake_tier(db):
    """A tier on the fake backend (tests/fakes.py): tests the HTTP layer, not a model."""
    return Tier.objects.create(name="fake", backend="fake", model_path="fake.bin", aliases="pretend")


@pytest.fixture
def client():
    return AsyncClient()


@pytest.fixture
def post(client):
    async def _post(path, payload, raw=None, **headers):
        body = raw if raw is not None else json.dumps(payload)
        return await client.post(path, body, content_type="application/json", **headers)

    return _post


def assert_error(response, status, code=None, param=None):
    """The OpenAI error envelope, with exactly its four keys."""
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]
