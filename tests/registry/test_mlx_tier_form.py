"""The admin's tier form for an MLX tier: its own options, and a path that must be an MLX model directory."""

import pytest

from registry.tier_form import tier_form

pytestmark = pytest.mark.django_db


def form(**data):
    base = {"name": "fast", "kind": "chat", "backend": "mlx", "model_path": "", "enabled": True, "stop": "[]"}
    return tier_form("mlx", "chat")(data={**base, **data})


def test_mlx_options_are_fields(mlx_tiny_path):
    f = form(model_path=mlx_tiny_path, opt_parallel="4", opt_n_ctx="")
    assert {"opt_parallel", "opt_n_ctx"} <= set(f.fields) and "opt_n_gpu_layers" not in f.fields
    assert f.is_valid(), f.errors
    assert f.save().options == {"parallel": 4}


def test_mlx_refuses_a_bad_option(mlx_tiny_path):
    f = form(model_path=mlx_tiny_path, opt_parallel="0")
    assert not f.is_valid()
    assert "greater than or equal to 1" in f.errors["opt_parallel"][0]


def test_mlx_refuses_what_is_not_an_mlx_model_directory(smollm2_path, tmp_path):
    assert "MLX model directory not found" in form(model_path=smollm2_path).errors["model_path"][0]  # a GGUF file
    assert "no config.json" in form(model_path=str(tmp_path)).errors["model_path"][0]
