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
    light.n_ctx = 512
    spec = tier_spec(tier=light)
    assert spec.load["n_ctx"] == 512 and spec.load["n_threads"] == 3


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
