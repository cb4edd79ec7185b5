"""Prompt reuse on MLX tiers: the KV caches of finished sequences, kept for prompts that start the same way.

A finished sequence leaves its per-layer KV cache and the tokens it holds (prompt and answer). A
new prompt takes a copy of the entry sharing its longest prefix, trimmed to that prefix, and only
the rest is prefilled (at least one token, whose logits start the answer). The copy keeps the
entry intact for the next prompt: the new sequence writes its own tokens into the copy. Entries
are bounded in tokens and in number, least recently used out first; an entry that another one
extends is dropped, since the longer one serves every prompt the shorter one would.
As mlx_lm.server's `LRUPromptCache` (`fetch_nearest_cache`, `insert_cache`).
https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/models/cache.py
Owner thread only.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Sequence

import mlx.core as mx
import numpy as np
from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache


class _Entry:
    __slots__ = ("tokens", "layers", "trimmable")

    def __init__(self, tokens: np.ndarray, layers: list[Any]):
        self.tokens = tokens
        self.layers = layers
        self.trimmable = can_trim_prompt_cache(layers)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


class MlxPromptCache:
    """Finished sequences' KV caches keyed by their tokens, at most `max_tokens` tokens in
    `max_entries` entries (least recently used out first)."""

    def __init__(self, *, max_tokens: int, max_entries: int):
        self.max_tokens = max_tokens
        self.max_entries = max_entries
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # oldest first
        self._next_id = 0
        self.tokens = 0  # held in all entries

    def __len__(self) -> int:
        return len(self._entries)

    def fetch(self, prompt: Sequence[int]) -> tuple[list[Any] | None, int]:
        """(a private copy of the cache holding the prompt's first `n` tokens, n), or (None, 0).

        n < len(prompt): the last prompt token is always left to prefill."""
        tokens = np.asarray(prompt, dtype=np.int64)
        best, best_key = 0, None
        for key, entry in self._entries.items():  # oldest first: on a tie the newest wins
            shared = min(common_prefix(entry.tokens, tokens), len(tokens) - 1)
            if not entry.trimmable and shared < len(entry.tokens):
                continue  # it can't forget its tail, so only a whole entry is of use
            if shared >= best and shared > 0:
                best, best_key = shared, key
        if best_key is None:
            return None, 0
        self._entries.move_to_end(best_key)
        entry = self._entries[best_key]
        layers = copy.deepcopy(entry.layers)
        trim_prompt_cache(layers, len(entry.tokens) - best)
        return layers, best

    def store(self, tokens: Sequence[int], layers: list[Any]) -> None:
        """Keep a finished sequence's cache (`layers` now belongs to this cache)."""
        if not tokens or len(tokens) > self.max_tokens or self.max_entries < 1:
            return
        mx.eval([layer.state for layer in layers])  # detach it from the batch's arrays
        entry = _Entry(np.asarray(tokens, dtype=np.int64), layers)
        for key, old in list(self._entries.items()):
            # An entry the new one extends (or repeats) serves nothing the new one doesn't.
            if entry.trimmable and common_prefix(old.tokens, entry.tokens) == len(old.tokens):
                self._drop(key)
        self._entries[self._next_id] = entry
        self._next_id += 1
        self.tokens += len(entry.tokens)
        while self.tokens > self.max_tokens or len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0

    def _drop(self, key: int) -> None:
        self.tokens -= len(self._entries.pop(key).tokens)
