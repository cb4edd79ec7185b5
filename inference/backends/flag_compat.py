"""Importing FlagEmbedding under transformers 5.

FlagEmbedding 1.4.2 imports `transformers.modeling_attn_mask_utils` (gone in transformers 5) from
its LLM-based reranker modules, which `import FlagEmbedding` pulls in eagerly. We never use those
modules, so a placeholder lets the import succeed; anything that touches it fails loudly.
"""

from __future__ import annotations

import importlib
import sys
import types

_PLACEHOLDER = "transformers.modeling_attn_mask_utils"


def _missing(name: str):
    """Stands in for a name of the removed module; calling it is an error, importing it is not."""

    def missing(*args, **kwargs):
        raise RuntimeError(f"{_PLACEHOLDER}.{name} is not available under transformers 5.")

    missing.__name__ = missing.__qualname__ = name
    return missing


def _placeholder_module() -> types.ModuleType:
    module = types.ModuleType(_PLACEHOLDER)

    def __getattr__(name: str):  # PEP 562: `from ... import X` works for any public X
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(name)

    module.__getattr__ = __getattr__
    return module


def import_flagembedding():
    """The `FlagEmbedding` package, importable even though transformers 5 lacks a module it names."""
    try:
        importlib.import_module(_PLACEHOLDER)
    except ImportError:
        sys.modules[_PLACEHOLDER] = _placeholder_module()
    return importlib.import_module("FlagEmbedding")
