import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import override_settings

from llmservice.errors import ModelNotFound
from registry.models import Tier
from registry.selectors import tier_get, tier_problems, tier_spec

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiers():
    light = Tier.objects.create(name="light", model_path="/models/SmolLM2.Q4.gguf", aliases="small, default")
    heavy = Tier.objects.create(name="heavy", model_path="/models/big.gguf", enabled=False)
    return light, heavy


def test_resolves_by_name_alias_and_file_name(tiers):
    light, _ = tiers
    for model in ("light", "small", "default", "SmolLM2.Q4.gguf", "SmolLM2.Q4"):
        assert tier_get(model=model) == light


def test_unknown_model_is_404_never_a_fallback(tiers):
    with pytest.raises(ModelNotFound) as info:
        tier_get(model="gpt-4o")
    assert info.value.status == 404 and info.value.code == "model_not_found" and info.value.param == "model"


def test_disabled_tier_is_not_served(tiers):
    with pytest.raises(ModelNotFound, match="disabled"):
        tier_get(model="heavy")


def test_alias_may_not_shadow_another_tier(tiers):
    clash = Tier(name="medium", model_path="/m.gguf", aliases="small")
    with pytest.raises(ValidationError) as info:
        clash.full_clean()
    assert "aliases" in info.value.message_dict


@override_settings(N_CTX=4096, N_THREADS=3)
def test_spec_uses_global_load_settings_unless_the_tier_overrides(tiers):
    light, _ = tiers
    assert tier_spec(tier=light).load["n_ctx"] == 4096
    light.options = {"n_ctx": 512}
    spec = tier_spec(tier=light)
    assert spec.load["n_ctx"] == 512 and spec.load["n_threads"] == 3
    assert spec.load == {"n_ctx": 512, "n_gpu_layers": 0, "n_threads": 3, "n_batch": 512, "chat_format": None,
                         "parallel": 4, "prefill_chunk": 256, "prompt_reuse": True, "flash_attn": True}


def test_the_load_key_changes_exactly_when_a_load_option_does(tiers, settings):
    light, _ = tiers
    key = tier_spec(tier=light).load_key
    light.temperature, light.max_waiting = 0.2, 3  # soft defaults and limits: the loaded model stays
    assert tier_spec(tier=light).load_key == key
    light.options = {"n_ctx": settings.N_CTX}  # the value it had anyway
    assert tier_spec(tier=light).load_key == key
    settings.N_CTX = 1024  # the tier sets n_ctx itself: the global value doesn't reach it
    assert tier_spec(tier=light).load_key == key
    light.options = {}  # now it does
    assert tier_spec(tier=light).load_key != key
    for changed in ({"n_threads": 1}, {"chat_format": "chatml"}):
        light.options = changed
        assert tier_spec(tier=light).load_key != key


def test_options_of_an_unknown_backend_are_kept_as_stored(tiers):
    light, _ = tiers
    light.backend, light.options = "nope", {"n_ctx": 64}
    assert tier_spec(tier=light).load == {"n_ctx": 64}
    [problem] = tier_problems(tier=light)
    assert problem.startswith("Unknown backend 'nope' (one of: llamacpp, llamacpp_serial, sentence_transformers,")


def test_spec_defaults_hold_only_what_the_tier_sets(tiers):
    light, _ = tiers
    light.temperature = 0.3
    assert tier_spec(tier=light).defaults == {"temperature": 0.3}


def test_missing_model_file_is_reported(tiers):
    light, _ = tiers
    assert tier_problems(tier=light) == ["model file not found: /models/SmolLM2.Q4.gguf"]


def test_check_command_warns_about_missing_model_files(tiers, capsys):
    call_command("check")
    err = capsys.readouterr().err
    assert "registry.W001" in err and "light" in err and "model file not found" in err


def test_check_command_warns_about_unregistered_backends_and_kinds_they_do_not_serve(tiers, capsys):
    Tier.objects.create(name="remote", backend="vllm", model_path="/m.gguf")
    Tier.objects.create(name="embedder", backend="llamacpp", kind="rerank", model_path="/m.gguf")
    call_command("check")
    err = capsys.readouterr().err
    assert "registry.W002" in err
    assert "Tier 'remote': Unknown backend 'vllm'" in err
    assert "Tier 'embedder': Backend 'llamacpp' does not serve rerank tiers (it serves: chat, embedding)." in err
