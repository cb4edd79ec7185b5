import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from registry.models import Tier
from registry.selectors import tier_spec
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


# --- load options from the environment ----------------------------------------------------------------
def test_load_options_are_seeded_per_tier_and_checked_by_the_backends_model(settings):
    env = {"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_N_CTX": "4096", "LIGHT_N_THREADS": "2", "LIGHT_CHAT_FORMAT": "chatml",
           "LIGHT_PARALLEL": "8"}
    assert [r.action for r in tier_seed_from_env(environ=env)] == ["created"]
    light = Tier.objects.get(name="light")
    assert light.options == {"n_ctx": 4096, "n_threads": 2, "chat_format": "chatml", "parallel": 8}
    settings.N_BATCH = 256  # a global setting fills what the tier leaves unset
    assert tier_spec(tier=light).load == {"n_ctx": 4096, "n_gpu_layers": 0, "n_threads": 2, "n_batch": 256, "chat_format": "chatml",
                                          "parallel": 8, "prefill_chunk": 256, "prompt_reuse": True, "flash_attn": True}


def test_an_embedding_tiers_options_come_from_its_own_backend(settings):
    settings.TIER_NAMES = ["embed"]
    tier_seed_from_env(environ={"EMBED_BATCH_ITEMS": "16", "EMBED_N_CTX": "4096"})  # n_ctx is not one of its options
    assert Tier.objects.get(name="embed").options == {"batch_items": 16}


def test_an_invalid_option_names_the_variable_and_stores_nothing():
    results = tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_N_CTX": "8", "MEDIUM_MODEL_PATH": "/m.gguf",
                                          "MEDIUM_CHAT_FORMAT": "nope"})
    details = {r.name: (r.action, r.detail) for r in results}
    assert details["light"] == ("error", "LIGHT_N_CTX='8': Input should be greater than or equal to 16")
    assert details["medium"][0] == "error" and details["medium"][1].startswith("MEDIUM_CHAT_FORMAT='nope': Input should be 'chatml'")
    assert not Tier.objects.exists()


def test_an_unregistered_backend_is_an_error():
    [result] = tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_BACKEND": "vllm"})
    assert result.action == "error" and result.detail.startswith("Unknown backend 'vllm' (one of: llamacpp,")


def test_force_replaces_the_options_with_the_environments():
    tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_N_CTX": "4096"})
    Tier.objects.filter(name="light").update(options={"n_ctx": 4096, "n_gpu_layers": -1})  # an admin edit
    tier_seed_from_env(environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_N_THREADS": "3"})
    assert Tier.objects.get(name="light").options == {"n_ctx": 4096, "n_gpu_layers": -1}  # kept without --force
    tier_seed_from_env(force=True, environ={"LIGHT_MODEL_PATH": "/a.gguf", "LIGHT_N_THREADS": "3"})
    assert Tier.objects.get(name="light").options == {"n_threads": 3}
