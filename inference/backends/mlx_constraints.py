"""Structured output on MLX: our compiled llguidance matchers inside Outlines' logits processor.

Outlines adapts the MLX model and tokenizer (`outlines.from_mlxlm`, `LLGuidanceBackend` builds the
llguidance tokenizer from the Hugging Face one). Its `LLGuidanceLogitsProcessor` is not used as is:
it creates matchers without limits and only warns when one fails. `MlxConstraintProcessor` keeps
its shape (Outlines' tensor adaptation and the consume-then-mask step) but runs the matcher our
constraint layer compiled (inference/constraints: limits, first-mask validation), and records a
failure instead of warning, so the sequence ends with the same 400 as on a llama.cpp tier.

The mask step in Outlines' and llguidance's MLX paths is a Metal kernel (`mx.fast.metal_kernel`),
which fails on Linux with `[metal_kernel] No Metal back-end`; without Metal the bitmask is applied
on the CPU (unpacked to booleans, disallowed logits set to -inf).
https://github.com/dottxt-ai/outlines/blob/main/outlines/backends/llguidance.py
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
from outlines.backends.llguidance import LLGuidanceBackend, LLGuidanceLogitsProcessor

from ..constraints import ConstraintFailed, Matcher


def metal_available() -> bool:
    return bool(mx.metal.is_available())


def llg_tokenizer(model: Any, tokenizer: Any):
    """llguidance's tokenizer for an mlx-lm model, through Outlines' MLX model adaptation."""
    import outlines

    return LLGuidanceBackend(outlines.from_mlxlm(model, tokenizer)).llg_tokenizer


def apply_bitmask_cpu(logits: mx.array, bitmask: np.ndarray) -> mx.array:
    """`logits` (1, V) with the tokens `bitmask` (W int32 words, little-endian bits) disallows at -inf."""
    n_vocab = logits.shape[-1]
    allowed = np.unpackbits(bitmask.view(np.uint8), count=min(n_vocab, bitmask.size * 32), bitorder="little")
    if allowed.size < n_vocab:  # logits beyond the tokenizer's vocabulary (padding rows): never allowed
        allowed = np.concatenate([allowed, np.zeros(n_vocab - allowed.size, dtype=np.uint8)])
    return mx.where(mx.array(allowed.astype(np.bool_)), logits, mx.array(-np.inf, dtype=logits.dtype))


def apply_bitmask_metal(logits: mx.array, bitmask: np.ndarray) -> mx.array:  # pragma: no cover - macOS
    import llguidance.mlx

    return llguidance.mlx.apply_token_bitmask(logits, bitmask)


class MlxConstraintProcessor(LLGuidanceLogitsProcessor):
    """One sequence's constraint as an mlx-lm logits processor: consume the last token, mask the next.

    mlx-lm calls it once per step with the tokens so far; the first call (at the end of the
    prompt) has nothing to consume. After a token breaks the constraint, `failure` is set and the
    mask lets only the end of sequence through; the decoder ends the sequence with that error.
    """

    def __init__(self, matcher: Matcher, n_vocab: int):
        super().__init__(grammar="", llg_tokenizer=None, tensor_library_name="mlx")
        self.matcher = matcher
        self.failure: ConstraintFailed | None = None
        self._row = np.zeros((n_vocab + 31) // 32, dtype=np.int32)
        self._bias_logits = self._bias_mlx if metal_available() else self._bias_cpu

    def _setup(self, batch_size: int) -> None:
        """Outlines builds unlimited matchers here; ours was compiled (and bounded) already."""

    def process_logits(self, input_ids: mx.array, logits: mx.array) -> mx.array:
        if self.is_first_token:
            self.is_first_token = False
        elif self.failure is None and not self.matcher.consume(int(input_ids[0, -1].item())):
            self.failure = self.matcher.failure()
        return self._bias_logits(input_ids, logits)

    def _bias_cpu(self, input_ids: mx.array, logits: mx.array) -> mx.array:
        self.matcher.fill_mask(self._row)
        return apply_bitmask_cpu(logits, self._row)

    def _bias_mlx(self, input_ids: mx.array, logits: mx.array) -> mx.array:  # pragma: no cover - macOS
        self.matcher.fill_mask(self._row)
        return apply_bitmask_metal(logits, self._row)
