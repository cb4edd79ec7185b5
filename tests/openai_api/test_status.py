"""The status websocket: staff only, a snapshot at once (HTTP-layer test on the fake backend)."""

import json

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator  # channels.testing needs daphne, which we don't ship
from django.contrib.auth.models import AnonymousUser, User

from openai_api.consumers import StatusConsumer
from registry.models import Tier

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user):
    scope = {"type": "websocket", "path": "/ws/status/", "headers": [], "subprotocols": [], "user": user}
    communicator = ApplicationCommunicator(StatusConsumer.as_asgi(), scope)
    await communicator.send_input({"type": "websocket.connect"})
    reply = await communicator.receive_output(timeout=10)
    return communicator, (reply["type"] == "websocket.accept", reply.get("code"))


async def test_anonymous_and_non_staff_users_are_refused():
    plain = await sync_to_async(User.objects.create_user)("bob", password="pw")
    for user in (AnonymousUser(), plain):
        communicator, (connected, code) = await connect(user)
        assert not connected and code == 4403


async def test_staff_get_a_snapshot_of_every_tier(manager):
    await Tier.objects.acreate(name="fake", backend="fake", model_path="fake.gguf")
    staff = await sync_to_async(User.objects.create_user)("ann", password="pw", is_staff=True)
    communicator, (connected, _) = await connect(staff)
    assert connected
    snapshot = json.loads((await communicator.receive_output(timeout=10))["text"])
    assert snapshot["tiers"][0] | {"name": "fake", "state": "unloaded", "loaded": False} == snapshot["tiers"][0]
    assert {"hits", "misses", "hit_rate"} <= set(snapshot["cache"])
    await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
    await communicator.wait(timeout=5)
