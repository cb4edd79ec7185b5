"""The admin, logged in, through its own forms and actions; requests run on the real SmolLM2."""

import json
import re

import pytest
from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client

from inference.manager import get_manager
from registry.models import CachedResponse, Tier
from registry.selectors import tier_spec
from tests.helpers import JOIN_TIMEOUT, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(manager):
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.login(username="admin", password="pw")
    return client


@pytest.fixture
def light(smollm2_path):
    return Tier.objects.create(name="light", model_path=smollm2_path, options={"n_threads": 2}, max_tokens=6)


def form_data(tier: Tier, **changes) -> dict:
    """What the admin's change form posts for `tier` (its load options as `opt_<name>`), with `changes` applied."""
    data = {}
    options = {f"opt_{name}": value for name, value in tier.options.items()}
    for field, value in {**model_to_dict(tier), **options, **changes}.items():
        if field in ("id", "options"):
            continue
        if isinstance(value, bool):
            if value:
                data[field] = "on"
        elif field == "stop":
            data[field] = json.dumps(value)
        else:
            data[field] = "" if value is None else value
    return {**data, "_save": "Save"}


def ask(client: Client, **extra) -> dict:
    body = {"model": "light", "messages": [{"role": "user", "content": "Tell me about the sea."}], "temperature": 0, **extra}
    response = client.post("/v1/chat/completions", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return {"x_cache": response["X-Cache"], **json.loads(response.content)}


def test_an_admin_edit_changes_the_next_response(admin_client, light):
    before = ask(admin_client)
    assert before["x_cache"] == "MISS"
    assert before["usage"]["completion_tokens"] == 6 and before["choices"][0]["finish_reason"] == "length"
    assert ask(admin_client)["x_cache"] == "HIT"

    response = admin_client.post(f"/admin/registry/tier/{light.pk}/change/", form_data(light, max_tokens=2))
    assert response.status_code == 302, response.content.decode()[:2000]

    after = ask(admin_client)
    assert after["x_cache"] == "MISS"  # the edit changed the tier's config: old answers never served
    assert after["usage"]["completion_tokens"] == 2
    assert before["choices"][0]["message"]["content"].startswith(after["choices"][0]["message"]["content"])


def test_a_load_parameter_edit_reloads_the_model_on_the_next_request(admin_client, light):
    ask(admin_client, max_tokens=1)
    old_worker = get_manager().scheduler(tier_spec(tier=light))
    admin_client.post(f"/admin/registry/tier/{light.pk}/change/", form_data(light, opt_n_ctx=512))
    assert Tier.objects.get(name="light").options == {"n_threads": 2, "n_ctx": 512}
    assert ask(admin_client, max_tokens=1)["x_cache"] == "MISS"
    new_worker = get_manager().scheduler(tier_spec(tier=Tier.objects.get(name="light")))
    assert new_worker is not old_worker and new_worker.spec.load["n_ctx"] == 512
    # the old instance was closed once its requests finished (a bounded wait: never a hang)
    assert old_worker.join(timeout=JOIN_TIMEOUT), "the retired model was never unloaded"
    assert old_worker.status().state == "unloaded"
    assert get_manager().status()["light"].state == "ready"  # the tier shows its new instance


def test_the_form_refuses_a_missing_file_and_out_of_range_values(admin_client, light):
    response = admin_client.post(
        f"/admin/registry/tier/{light.pk}/change/", form_data(light, model_path="/nope/model.gguf", temperature=3)
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "not found" in " ".join(errors["model_path"]).lower()
    assert "temperature" in errors


def test_the_tier_list_shows_live_status_and_the_actions_warm_and_unload(admin_client, light):
    page = admin_client.get("/admin/registry/tier/").content.decode()
    assert 'data-state="unloaded"' in page
    admin_client.post("/admin/registry/tier/", {"action": "warm", "_selected_action": [light.pk]})
    page = admin_client.get("/admin/registry/tier/").content.decode()
    assert 'data-state="ready"' in page and "Live status" in page
    admin_client.post("/admin/registry/tier/", {"action": "unload", "_selected_action": [light.pk]})
    # "retiring" until the owner thread has closed the model, then "unloaded"
    wait_until(lambda: 'data-state="unloaded"' in admin_client.get("/admin/registry/tier/").content.decode(), "unloaded")


def test_the_cache_admin_lists_searches_shows_and_deletes(admin_client, light):
    ask(admin_client, max_tokens=1)
    ask(admin_client, max_tokens=1, messages=[{"role": "user", "content": "A different question"}])
    entry = CachedResponse.objects.get(prompt_text__contains="different")
    listing = admin_client.get("/admin/registry/cachedresponse/?q=different").content.decode()
    assert entry.key[:12] in listing and "1 result" in listing
    detail = admin_client.get(f"/admin/registry/cachedresponse/{entry.pk}/change/").content.decode()
    assert "&quot;role&quot;: &quot;user&quot;" in detail and "<pre>" in detail
    admin_client.post("/admin/registry/cachedresponse/", {"action": "clear_tiers", "_selected_action": [entry.pk]})
    assert CachedResponse.objects.count() == 0
    assert ask(admin_client, max_tokens=1)["x_cache"] == "MISS"  # memory was cleared too


def test_admin_needs_a_login():
    assert Client().get("/admin/registry/tier/").status_code == 302
    assert Client().get("/status/").status_code == 302


def test_clear_expired_needs_no_selection(admin_client, light):
    ask(admin_client, max_tokens=1)
    ask(admin_client, max_tokens=1, messages=[{"role": "user", "content": "Another"}])
    CachedResponse.objects.filter(prompt_text__contains="Another").update(expires_at="2000-01-01T00:00:00Z")
    response = admin_client.post("/admin/registry/cachedresponse/", {"action": "clear_expired", "index": "0"}, follow=True)
    assert "Deleted 1 expired entries." in response.content.decode()
    assert CachedResponse.objects.count() == 1


def test_stored_responses_are_listed_viewed_and_deleted(admin_client, light):
    """A response made through the API (the real SmolLM2) appears in the admin, read-only."""
    import asyncio

    from django.test import AsyncClient

    from registry.models import StoredResponse

    async def create():
        return await AsyncClient().post("/v1/responses", {"model": "light", "input": "Hi", "max_output_tokens": 2},
                                        content_type="application/json")

    made = json.loads(asyncio.run(create()).content)
    row = StoredResponse.objects.get(response_id=made["id"])
    listing = admin_client.get("/admin/registry/storedresponse/")
    assert listing.status_code == 200 and made["id"] in listing.content.decode()
    page = admin_client.get(f"/admin/registry/storedresponse/{row.pk}/change/")
    assert page.status_code == 200 and "&quot;input&quot;" not in page.content.decode() and "Hi" in page.content.decode()
    assert admin_client.get("/admin/registry/storedresponse/add/").status_code == 403
    admin_client.post(f"/admin/registry/storedresponse/{row.pk}/delete/", {"post": "yes"})
    assert not StoredResponse.objects.filter(pk=row.pk).exists()


def test_keep_alive_is_edited_in_the_admin_and_the_tier_list_counts_down(admin_client, light):
    url = f"/admin/registry/tier/{light.pk}/change/"
    refused = admin_client.post(url, form_data(light, keep_alive="soon"))
    assert "must be a duration" in " ".join(refused.context["adminform"].form.errors["keep_alive"])
    assert admin_client.post(url, form_data(light, keep_alive="10m", keep_alive_max="1h")).status_code == 302
    light.refresh_from_db()
    assert (light.keep_alive, light.keep_alive_max) == ("10m", "1h")
    admin_client.post("/admin/registry/tier/", {"action": "warm", "_selected_action": [light.pk]})
    page = admin_client.get("/admin/registry/tier/").content.decode()
    assert "Unloads in" in page
    assert re.search(r'<td class="field-unloads_in">\d+ min \d\ds</td>', page)  # e.g. "9 min 59s"
    admin_client.post("/admin/registry/tier/", {"action": "unload", "_selected_action": [light.pk]})
