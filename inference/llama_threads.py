"""Thread pools that outlive one graph, for llama.cpp contexts built without OpenMP.

The Makefile builds llama.cpp without OpenMP (torch's libgomp, shared with llama.cpp's, slowed LLM
decode once an embedding tier had run). Without OpenMP, a context with no pool attached makes one
for every graph it computes: a new thread per extra core for each token, ended with the token.
Between requests that come with gaps that cost more than half of the tokens/s (44-80 against
110-130 on 2 cores, 64-token streams 0.3 s apart). A context with pools attached keeps its workers
between graphs, asleep until the next one (POLL). llama-cli attaches pools the same way. In an OpenMP build a pool starts no threads, and the context computes as before.
https://github.com/ggml-org/llama.cpp/blob/master/ggml/include/ggml-cpu.h (`ggml_threadpool_new`)
https://github.com/ggml-org/llama.cpp/blob/master/include/llama.h (`llama_attach_threadpool`)

`attach(ctx, ...)` after `llama_init_from_model`; `release(ctx)` after `llama_free(ctx)`. For a
`llama_cpp.Llama`: `attach_llama(llama)`, then `close_llama(llama)`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)
GGML_MAX_N_THREADS = 512  # ggml.h
# How long an idle worker polls for the next graph before it sleeps (ggml: 0-100, default 50).
# At 50 it polls 50 x 128K rounds, about 170 ms on this machine, after every request: a core
# taken from the embedding tiers, the event loop and the clients. 0 sleeps at once; the next
# graph wakes it (one futex wake per token, a few microseconds against milliseconds of decode).
# Bench section 1 in one sitting: 0 gave 117 tokens/s and 4.8 ms overhead, 50 gave 82 and 10.7.
POLL = 0


class _Params(ctypes.Structure):
    """`struct ggml_threadpool_params` (ggml.h); filled by `ggml_threadpool_params_init`."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


_lock = threading.Lock()
_attached: dict[int, list[int]] = {}  # context address -> its pools
_api: tuple[Any, Any] | None = None


def _functions() -> tuple[Any, Any] | None:
    """(libggml, libllama) with the pool functions typed, or None where the build lacks them
    (ggml's CPU backend loaded as a plugin exports them from its own library)."""
    global _api
    if _api is None:
        from llama_cpp import _ggml, llama_cpp

        ggml, llama = _ggml.libggml, llama_cpp._lib
        try:
            ggml.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(_Params), ctypes.c_int]
            ggml.ggml_threadpool_params_init.restype = None
            ggml.ggml_threadpool_new.argtypes = [ctypes.POINTER(_Params)]
            ggml.ggml_threadpool_new.restype = ctypes.c_void_p
            ggml.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
            ggml.ggml_threadpool_free.restype = None
            llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            llama.llama_attach_threadpool.restype = None
        except AttributeError as exc:
            logger.info("llama.cpp contexts make a thread pool per graph (%s)", exc)
            _api = (None, None)
        else:
            _api = (ggml, llama)
    return None if _api[0] is None else _api


def attach(ctx: Any, n_threads: int, n_threads_batch: int) -> None:
    """Give `ctx` pools of `n_threads` (one token at a time) and `n_threads_batch` (prompts)."""
    api = _functions()
    if api is None:
        return
    ggml, llama = api
    address = ctypes.cast(ctx, ctypes.c_void_p).value
    pools = [_new(ggml, n_threads)]
    if n_threads_batch != n_threads:
        try:
            pools.append(_new(ggml, n_threads_batch))
        except MemoryError:
            ggml.ggml_threadpool_free(pools[0])
            raise
    llama.llama_attach_threadpool(address, pools[0], pools[-1])
    with _lock:
        _attached[address] = pools


def release(ctx: Any) -> None:
    """Free the pools of a context that `llama_free` has freed (nothing if it had none)."""
    address = ctypes.cast(ctx, ctypes.c_void_p).value
    with _lock:
        pools = _attached.pop(address, [])
    for pool in pools:
        _api[0].ggml_threadpool_free(pool)


def attach_llama(llama: Any) -> None:
    """`attach` for a `llama_cpp.Llama`, with the threads it was made with; `close_llama` closes it."""
    attach(llama.ctx, llama.context_params.n_threads, llama.context_params.n_threads_batch)


def close_llama(llama: Any) -> None:
    """Close a `llama_cpp.Llama` (which frees its context), then its pools."""
    ctx = llama.ctx
    llama.close()
    release(ctx)


def _new(ggml: Any, n_threads: int) -> int:
    params = _Params()
    ggml.ggml_threadpool_params_init(ctypes.byref(params), max(n_threads, 1))
    params.poll = POLL
    pool = ggml.ggml_threadpool_new(ctypes.byref(params))
    if not pool:
        raise MemoryError(f"ggml could not start a pool of {n_threads} threads")
    return pool
