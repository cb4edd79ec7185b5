"""One reusable `llama_batch`, filled through numpy views: no ctypes object per token.

https://github.com/ggml-org/llama.cpp/blob/master/include/llama.h (`llama_batch`)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class TokenBatch:
    """Tokens for one `llama_decode`: each with its position, its sequence, and whether its
    logits are wanted. Allocated once (`capacity` tokens), cleared every step."""

    def __init__(self, lib: Any, capacity: int):
        self._lib = lib
        self.capacity = capacity
        self.raw = lib.llama_batch_init(capacity, 0, 1)
        self._token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self._pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self._n_seq = np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))
        self._logits = np.ctypeslib.as_array(self.raw.logits, shape=(capacity,))
        # Each token's seq_id list is its own small array; keep a view of each one's first entry.
        self._seq = [np.ctypeslib.as_array(self.raw.seq_id[i], shape=(1,)) for i in range(capacity)]
        self._n_seq[:] = 1
        self.n = 0
        self.outputs = 0  # tokens with logits wanted; their rows come back in this order

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def clear(self) -> None:
        self.n = 0
        self.outputs = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Add one token; returns its index (where `llama_get_logits_ith` finds its logits)."""
        i = self.n
        self._token[i] = token
        self._pos[i] = pos
        self._seq[i][0] = seq
        self._logits[i] = logits
        self.n = i + 1
        self.outputs += logits
        return i

    def add_run(self, tokens: Sequence[int], start: int, seq: int, logits_last: bool, logits_all: bool = False) -> int:
        """Add consecutive tokens of one sequence from position `start`; returns the last one's index.
        Logits (or embeddings) are output for the last token, or for all of them."""
        i, k = self.n, len(tokens)
        self._token[i : i + k] = tokens
        self._pos[i : i + k] = np.arange(start, start + k, dtype=np.int32)
        for j in range(i, i + k):
            self._seq[j][0] = seq
        self._logits[i : i + k] = logits_all
        self._logits[i + k - 1] = logits_last or logits_all
        self.n = i + k
        self.outputs += k if logits_all else int(logits_last)
        return i + k - 1

    def decode(self, ctx: Any) -> int:
        self.raw.n_tokens = self.n
        return self._lib.llama_decode(ctx, self.raw)

    def logits(self, ctx: Any, n_vocab: int) -> np.ndarray:
        """The last decode's logits, one row per output in batch order (a view: no copy)."""
        return np.ctypeslib.as_array(self._lib.llama_get_logits(ctx), shape=(self.outputs, n_vocab))

    def free(self) -> None:
        if self.raw is not None:
            self._lib.llama_batch_free(self.raw)
            self.raw = None
