"""One sequence's constraint while it decodes, and the token-bitmask arithmetic (all of it here).

A bitmask row holds one bit per vocabulary token (int32 words, little-endian bit order, as
llguidance writes them); a set bit means the token may come next. Per step, per sequence:

    matcher.fill_mask(bitmask[i])      # or fill_masks([(m, i), ...], bitmask) for a batch
    apply_bitmask(logits, bitmask)     # disallowed tokens -> -inf; (V,) with (W,) or (B, V) with (B, W)
    token = sample(logits)
    if not matcher.consume(token):
        raise matcher.failure()        # the constraint could not be followed: end this sequence
    if matcher.is_stopped():
        ...                            # the output is complete: finish_reason "stop"

`matcher.apply(logits)` does the first two for a single sequence. No method raises for a
grammar problem: a matcher that fails (a limit hit mid-way) masks everything but the end of
sequence, and `consume` returns False, so the owner thread ends that sequence with
`failure()` (a 400-type error for the client) and carries on with the others.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from llguidance import LLExecutor, LLMatcher

from llmservice.errors import InvalidRequest

FAILED = "The output constraint could not be followed after {tokens} tokens: {reason}"


class ConstraintFailed(InvalidRequest):
    """A compiled constraint hit one of its limits while the model was generating."""

    code = "constraint_failed"


def bitmask_words(n_vocab: int) -> int:
    return (n_vocab + 31) // 32


def allocate_bitmask(n_vocab: int, rows: int = 1) -> np.ndarray:
    """A (rows, words) int32 bitmask, every token allowed."""
    return np.full((rows, bitmask_words(n_vocab)), -1, dtype=np.int32)


def apply_bitmask(logits: np.ndarray, bitmask: np.ndarray) -> None:
    """Set the logits of disallowed tokens to -inf, in place (logits may be a strided view).

    Logits beyond the bitmask's width (padding rows of some vocabularies) are disallowed."""
    n_vocab = logits.shape[-1]
    width = bitmask.shape[-1] * 32
    if n_vocab > width:
        logits[..., width:] = -np.inf
        logits = logits[..., :width]
    allowed = np.unpackbits(bitmask.view(np.uint8), axis=-1, count=n_vocab, bitorder="little").view(bool)
    np.putmask(logits, ~allowed, -np.inf)


_executor: LLExecutor | None = None


def fill_masks(matchers: Sequence[tuple["Matcher", int]], bitmask: np.ndarray) -> None:
    """Fill row `i` of `bitmask` for each (matcher, i), in parallel (llguidance's own threads)."""
    global _executor
    if _executor is None:
        _executor = LLExecutor()
    if bitmask.dtype != np.int32 or bitmask.ndim != 2 or not bitmask.flags["C_CONTIGUOUS"]:
        raise ValueError("the bitmask must be a C-contiguous 2-D int32 array (allocate_bitmask)")
    pairs = [(m._inner, i) for m, i in matchers if not m._inner.is_error()]
    _executor.unsafe_compute_mask_ptr(pairs, bitmask.ctypes.data, bitmask.shape[1] * 4, bitmask.shape[0])
    for m, i in matchers:
        if m._inner.is_error():
            m._eos_only(bitmask[i])


class Matcher:
    """A compiled constraint's state for one sequence. Used from one thread at a time."""

    __slots__ = ("_inner", "_eos", "_row", "tokens", "param")

    def __init__(self, inner: LLMatcher, n_vocab: int, eos: Sequence[int], param: str):
        self._inner = inner
        self._eos = tuple(eos)
        self._row = np.zeros(bitmask_words(n_vocab), dtype=np.int32)
        self.tokens = 0
        self.param = param

    def fill_mask(self, row: np.ndarray) -> None:
        """Write the allowed next tokens into `row` (int32, C-contiguous, bitmask_words long)."""
        if not self._inner.is_error():
            self._inner.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
        if self._inner.is_error():
            self._eos_only(row)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Mask `logits` (one sequence's, in place) to the allowed next tokens; returns them."""
        self.fill_mask(self._row)
        apply_bitmask(logits, self._row)
        return logits

    def consume(self, token: int) -> bool:
        """Advance past the sampled token; False if it broke the constraint (see `failure`), also
        when the matcher failed while masking (llguidance then still accepts the end of sequence)."""
        self.tokens += 1
        return self._inner.consume_token(token) and not self._inner.is_error()

    def is_stopped(self) -> bool:
        """Nothing but the end of the sequence may follow."""
        return self._inner.is_stopped()

    def is_accepting(self) -> bool:
        """The output so far is complete and valid (it may still go on)."""
        return self._inner.is_accepting()

    def failure(self) -> ConstraintFailed:
        reason = self._inner.get_error().strip().splitlines()
        text = reason[0] if reason else "the sampled token was not allowed"
        return ConstraintFailed(FAILED.format(tokens=self.tokens, reason=text[:300]), param=self.param)

    def _eos_only(self, row: np.ndarray) -> None:
        row[:] = 0
        words = row.view(np.uint32)
        for token in self._eos:
            words[token // 32] |= np.uint32(1 << (token % 32))
