"""One thread computes for every torch-based tier (sentence-transformers, FlagEmbedding), and their
models load on threads that end with the load.

Why: torch's CPU kernels parallelize with OpenMP (libgomp). Each thread that starts a parallel
region gets a team of worker threads of its own, kept while that thread lives. Once libgomp manages
more threads than there are CPUs, its idle workers stop spinning almost at once (a "throttled"
spin count of 100 instead of about 300,000), so each of the dozens of small parallel ops in a
forward pass (layer norms, GELUs, attention) waits for its workers to wake up. Two tiers, each
computing on its own owner thread, were enough: on 2 cores a MiniLM forward pass went from 8.1 to
10.3 ms once a second thread had used torch. With every forward pass on this one thread, the
process keeps one team, whatever tiers are loaded. A load runs ops too (weights copied in
parallel); its thread ends with it, and libgomp frees a thread's team when the thread exits.

The owner thread of each tier still runs its scheduler; it waits here only for the forward pass.
https://gcc.gnu.org/onlinedocs/libgomp/GOMP_005fSPINCOUNT.html
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

THREAD_NAME = "torch-compute"
_compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)


def computed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on the process's torch thread; the calling thread waits for it."""
    return _compute.submit(fn, *args, **kwargs).result()


def loaded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` (a model load) on a thread of its own, ended before this returns."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-load") as pool:
        return pool.submit(fn, *args, **kwargs).result()
