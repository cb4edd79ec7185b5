"""The batched llama.cpp engine's load options and the `llama_context` they make.

A tier's `n_ctx` stays the context window of one request: the context holds `n_ctx x parallel`
KV cells, not unified (each sequence its own `n_ctx`), with flash attention on, which keeps a
request's greedy answer the same batched as alone.
https://github.com/ggml-org/llama.cpp/blob/master/include/llama.h (`llama_context_params`)
"""

from __future__ import annotations

import os
from typing import Any

from ..llamacpp_common import LlamaCppOptions
from ..options import option


class BatchedLlamaOptions(LlamaCppOptions):
    """Load options of a llama.cpp chat tier (the `llamacpp` backend)."""

    parallel: int = option(4, ge=1, le=256, description="Sequences decoded together (KV cells: n_ctx x parallel).")
    prefill_chunk: int = option(256, ge=1, description="Most prompt tokens prefilled per step while others generate.")
    prompt_reuse: bool = option(True, description="Reuse a free sequence's cached prompt for one that starts the same way.")
    flash_attn: bool = option(True, description="Flash attention (keeps batched greedy answers identical to solo ones).")


def kv_cache_bytes(lib: Any, model: Any, opts: BatchedLlamaOptions) -> int:
    """What the KV cache costs: n_ctx x parallel cells, each a K and a V row per layer (f16)."""
    head_dim = lib.llama_model_n_embd(model) // max(lib.llama_model_n_head(model), 1)
    per_cell = 2 * lib.llama_model_n_layer(model) * lib.llama_model_n_head_kv(model) * head_dim * 2
    return per_cell * opts.n_ctx * opts.parallel


def context_params(lib: Any, opts: BatchedLlamaOptions) -> Any:
    """n_ctx cells for each of `parallel` sequences, KV not unified, flash attention on."""
    params = lib.llama_context_default_params()
    params.n_ctx = opts.n_ctx * opts.parallel
    params.n_seq_max = opts.parallel
    params.n_batch = max(opts.n_batch, opts.parallel)
    params.n_ubatch = min(params.n_batch, 512)
    # As llama-cpp-python's `Llama`: half the cores for generation, all of them for prompts.
    params.n_threads = opts.n_threads or max((os.cpu_count() or 2) // 2, 1)
    params.n_threads_batch = opts.n_threads or (os.cpu_count() or 1)
    params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts.flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    params.kv_unified = False
    params.no_perf = True
    return params
