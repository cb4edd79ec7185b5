"""The `light-mlx` tier: seeded on SmolLM2 converted to MLX by `build_models`."""

from registry.services import tier_env_values


def test_light_mlx_defaults_to_the_built_conversion(mlx_smollm2_path, settings, tmp_path):
    from inference.mlx_build import SMOLLM2_DIR

    settings.MODELS_DIR = str(tmp_path)
    assert tier_env_values(name="light-mlx", environ={}) is None  # not built here: no tier
    settings.MODELS_DIR = str(mlx_smollm2_path).removesuffix("/" + SMOLLM2_DIR)
    assert tier_env_values(name="light-mlx", environ={}) == {"backend": "mlx", "model_path": mlx_smollm2_path}


def test_light_mlx_from_the_environment_is_still_mlx(tmp_path):
    values = tier_env_values(name="light-mlx", environ={"LIGHT_MLX_MODEL_PATH": str(tmp_path)})
    assert values == {"backend": "mlx", "model_path": str(tmp_path)}
