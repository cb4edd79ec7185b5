import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from registry.models import Tier
from registry.services import tier_env_values, tier_seed_from_env

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def chat_tiers_only(settings):
    """The bundled embed/rerank defaults are seeded too; these tests are about chat tiers."""
    settings.TIER_NAMES = ["light", "medium", "heavy"]


def test_embed_and_rerank_tiers_are_seeded_by_default(settings):
    settings.TIER_NAMES = ["light", "embed", "rerank"]
    results = tier_seed_from_env(environ={})
    kinds = {t.name: t.kind for t in Tier.objects.all()}
    assert kinds == {"light": "chat", "embed": "embedding", "rerank": "rerank"}, results


def test_light_defaults_to_the_bundled_smollm2(smollm2_path):
    assert tier_env_values(name="light", environ={}) == {"model_path": smollm2_path}


def test_unconfigured_tier_is_not_seeded():
    assert tier_env_values(name="medium", environ={}) is None


def test_env_values_are_parsed_by_type():
    values = tier_env_values(
        name="medium",
        environ={"MEDIUM_MODEL_PATH": "/m.gguf", "MEDIUM_TEMPERATURE": "0.3", "MEDIUM_MAX_TOKENS": "99", "MEDIUM_STOP": '["END"]'},
    )
    assert values == {"model_path": "/m.gguf", "temperature": 0.3, "max_tokens": 99, "stop": ["END"]}


def test_invalid_env_value_names_the_variable():
    with pytest.raises(ValueError, match="MEDIUM_TEMPERATURE='hot'"):
        tier_env_values(name="medium", environ={"MEDIUM_MODEL_PATH": "/m.gguf", "MEDIUM_TEMPERATURE": "hot"})


def test_seed_creates_missing_tiers_only():
    env = {"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_TEMPERATURE": "0.5", "HEAVY_MODEL_PATH": "/h.gguf"}
    results = tier_seed_from_env(environ=env)
    assert {(r.name, r.action) for r in results} == {("light", "created"), ("heavy", "created")}
    assert Tier.objects.get(name="light").temperature == 0.5

    Tier.objects.filter(name="light").update(temperature=1.5)  # an admin edit
    results = tier_seed_from_env(environ=env)
    assert {r.action for r in results} == {"kept"}
    assert Tier.objects.get(name="light").temperature == 1.5  # the database wins


def test_force_overwrites_from_the_environment_and_resets_unset_fields():
    tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_TOP_K": "10"})
    Tier.objects.filter(name="light").update(temperature=1.5)
    results = tier_seed_from_env(force=True, environ={"LIGHT_MODEL_PATH": "/b.gguf", "LIGHT_TEMPERATURE": "0.2"})
    assert [(r.name, r.action) for r in results] == [("light", "updated")]
    tier = Tier.objects.get(name="light")
    assert (tier.model_path, tier.temperature, tier.top_k) == ("/b.gguf", 0.2, None)


def test_out_of_range_env_value_is_an_error_and_stores_nothing():
    results = tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_TEMPERATURE": "9"})
    assert results[0].action == "error" and "temperature" in results[0].detail
    assert not Tier.objects.filter(name="light").exists()


def test_sync_tiers_command_reports_and_fails_on_errors(monkeypatch):
    monkeypatch.setenv("LIGHT_MODEL_PATH", "/a.gguf")
    monkeypatch.setenv("MEDIUM_MODEL_PATH", "/m.gguf")
    monkeypatch.setenv("MEDIUM_TOP_P", "abc")
    with pytest.raises(CommandError):
        call_command("sync_tiers")
    assert Tier.objects.filter(name="light").exists()
    assert not Tier.objects.filter(name="medium").exists()
