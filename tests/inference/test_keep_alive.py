"""keep_alive durations (Ollama's forms), their bound, and the tier's values in its ModelSpec."""

import math

import pytest
from django.test import override_settings

from inference.keep_alive import INVALID_DURATION, duration_parse, keep_alive_bound
from inference.params import ModelSpec


@pytest.mark.parametrize(
    "value, seconds",
    [(0, 0.0), (300, 300.0), (0.5, 0.5), ("0", 0.0), ("90", 90.0), ("1.5", 1.5), ("30s", 30.0), ("5m", 300.0),
     ("1h30m", 5400.0), ("250ms", 0.25), ("0.05s", 0.05), (" 2m ", 120.0), (-1, math.inf), ("-1", math.inf),
     ("-5m", math.inf)],
)
def test_durations(value, seconds):
    assert duration_parse(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "5 m", "1x", "m", "5m3", "h1", "nan", "inf5", True, None, [1], "9" * 40,
                                   float("nan")])
def test_invalid_durations(value):
    with pytest.raises(ValueError, match="must be a duration"):
        duration_parse(value)
    assert "must be a duration" in INVALID_DURATION


def test_a_request_is_bounded_by_the_maximum_and_falls_back_to_the_tier():
    assert keep_alive_bound(None, default=300, maximum=60) == 300
    assert keep_alive_bound(3600, default=300, maximum=60) == 60
    assert keep_alive_bound(math.inf, default=300, maximum=60) == 60
    assert keep_alive_bound(0, default=300, maximum=60) == 0
    assert keep_alive_bound(math.inf, default=300, maximum=math.inf) == math.inf
    spec = ModelSpec("t", "llamacpp", "chat", "/m", {}, {}, keep_alive=300, keep_alive_max=60)
    assert spec.with_keep_alive(None) is spec
    assert spec.with_keep_alive(3600).keep_alive == 60
    assert spec.with_keep_alive(3600).load_key == spec.load_key  # never a reload


@pytest.mark.django_db
@override_settings(KEEP_ALIVE="2m", KEEP_ALIVE_MAX="-1")
def test_the_tiers_spec_carries_its_keep_alive_else_the_settings():
    from registry.models import Tier
    from registry.selectors import tier_spec

    tier = Tier.objects.create(name="ka", model_path="/m")
    assert (tier_spec(tier=tier).keep_alive, tier_spec(tier=tier).keep_alive_max) == (120.0, math.inf)
    tier.keep_alive, tier.keep_alive_max = "0", "10m"
    assert (tier_spec(tier=tier).keep_alive, tier_spec(tier=tier).keep_alive_max) == (0.0, 600.0)
    tier.keep_alive = "soon"
    with pytest.raises(Exception, match="must be a duration"):
        tier.full_clean()
