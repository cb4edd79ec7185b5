"""Sampling promises every one-request backend keeps, on real models: llama.cpp on the bundled
SmolLM2 GGUF, MLX on the tiny random-weight llama `build_models` makes."""

import pytest

from tests.inference import test_llamacpp, test_mlx
from tests.inference.test_llamacpp import run


@pytest.fixture(scope="module", params=["llamacpp", "mlx"])
def backend(request):
    if request.param == "llamacpp":
        from inference.backends.llamacpp import LlamaCppBackend
        from inference.bundled import smollm2_gguf

        b = LlamaCppBackend.load(test_llamacpp.make_spec(smollm2_gguf()))
    else:
        from inference.backends.mlx import MlxBackend

        b = MlxBackend.load(test_mlx.make_spec(request.getfixturevalue("mlx_tiny_path")))
    yield b
    b.close()


def test_greedy_is_deterministic(backend):
    assert run(backend, temperature=0, max_tokens=16)[1] == run(backend, temperature=0, max_tokens=16)[1]


def test_seed_makes_sampling_reproducible(backend):
    a = run(backend, temperature=1.0, seed=42, max_tokens=16)[1]
    b = run(backend, temperature=1.0, seed=42, max_tokens=16)[1]
    c = run(backend, temperature=1.0, seed=43, max_tokens=16)[1]
    assert a == b
    assert a != c
