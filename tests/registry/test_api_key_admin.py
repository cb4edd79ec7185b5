"""API keys in the admin: made there (the secret shown once, only a hash stored), revoked with
an action, usage per tier and day shown on the key's page."""

import re
from datetime import date

import pytest
from django.contrib.auth.models import User
from django.test import Client

from registry.models import ApiKey, ApiKeyUsage, Tier
from registry.services import api_key_hash

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client():
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.login(username="admin", password="pw")
    return client


def test_a_key_made_in_the_admin_is_shown_once_and_stored_hashed(admin_client):
    tier = Tier.objects.create(name="light", backend="fake", model_path="x.gguf")
    r = admin_client.post(
        "/admin/registry/apikey/add/",
        {"name": "web", "tiers": [tier.pk], "requests_per_minute": "30", "tokens_per_minute": "",
         "expires_at_0": "", "expires_at_1": "", "usage-TOTAL_FORMS": "0", "usage-INITIAL_FORMS": "0"},
        follow=True,
    )
    assert r.status_code == 200
    shown = re.findall(r"sk-llm-[A-Za-z0-9_-]{20,}", r.content.decode())
    assert len(shown) == 1
    key = ApiKey.objects.get()
    assert key.key_hash == api_key_hash(secret=shown[0]) and shown[0] not in key.key_hash
    assert key.name == "web" and key.requests_per_minute == 30 and list(key.tiers.all()) == [tier]
    page = admin_client.get(f"/admin/registry/apikey/{key.pk}/change/").content.decode()
    assert shown[0] not in page  # never shown again


def test_revoke_action_and_usage_on_the_key_page(admin_client):
    from registry.services import api_key_create

    key, _ = api_key_create(name="batch")
    ApiKeyUsage.objects.create(key=key, tier="light", day=date(2026, 1, 2), requests=7, prompt_tokens=70, completion_tokens=21)
    page = admin_client.get(f"/admin/registry/apikey/{key.pk}/change/").content.decode()
    cells = dict(re.findall(r'<td class="field-(\w+)">\s*<p>([^<]*)</p>', page))
    assert (cells["tier"], cells["requests"], cells["prompt_tokens"], cells["completion_tokens"]) == ("light", "7", "70", "21")
    admin_client.post("/admin/registry/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "light" in admin_client.get("/admin/registry/apikeyusage/").content.decode()
