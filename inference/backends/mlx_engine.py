"""MLX tiers under the engine contract (inference/engines/base.py): continuous batching on mlx-lm.

Up to `parallel` sequences decode together in mlx-lm's `BatchGenerator` (one forward pass per
step); a job with `n` choices takes `n` of them. Joining requests are prefilled between steps,
finished and aborted ones leave at once. Each sequence has its own sampler (a seeded one with its
own `mx.random` key, so seeded requests batch like any other and stay reproducible), its own
penalties/logit_bias processors, its own compiled constraint, stops, logprobs and max_tokens.
With `prompt_reuse` on, finished sequences' KV caches are kept (bounded, LRU) and a new prompt
prefills only what follows its longest cached prefix (mlx_prompt_cache.py).
Every method runs on the model's owner thread.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from llmservice.errors import InternalError, ServiceError

from ..engines.base import EngineStats, Job
from ..events import Failed
from ..options import EngineOptions, option, options_load
from ..params import ModelSpec
from .mlx import MlxBackend
from .mlx_decode import MlxSequence
from .mlx_prompt_cache import MlxPromptCache

logger = logging.getLogger(__name__)

ADMIT_FAILED = "The model failed to start this request; see the server log."


class MlxOptions(EngineOptions):
    """Load options of an MLX tier; unset ones take the global settings named below."""

    n_ctx: int = option(2048, setting="N_CTX", ge=16, description="Context window in tokens (prompt + completion).")
    parallel: int = option(
        8, setting="MLX_PARALLEL", ge=1, le=256, description="Sequences decoded together (continuous batching)."
    )
    prompt_reuse: bool = option(
        True, description="Keep finished sequences' KV caches; prefill only what a new prompt adds to one."
    )
    prompt_cache_tokens: int = option(
        8192, ge=0, description="Most tokens the kept KV caches hold together (least recently used out first)."
    )
    prompt_cache_entries: int = option(32, ge=0, le=1024, description="Most finished sequences kept for prompt reuse.")


class MlxEngine:
    """An mlx-lm model serving many jobs at once through one `BatchGenerator`."""

    kinds: ClassVar[frozenset[str]] = frozenset({"chat"})
    options: ClassVar[type[EngineOptions]] = MlxOptions

    def __init__(self, model: MlxBackend, parallel: int):
        self.model = model
        self.constraint_compiler = model.constraint_compiler  # read by the prepare step
        self._parallel = parallel
        self._jobs: dict[Job, list[MlxSequence]] = {}  # admitted job -> its unfinished sequences
        self._failed: list[Job] = []  # failed at admission: returned by the next step

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        return MlxBackend.check(spec)

    @classmethod
    def load(cls, spec: ModelSpec) -> "MlxEngine":
        options = options_load(MlxOptions, spec)
        cache = None
        if options.prompt_reuse and options.prompt_cache_tokens and options.prompt_cache_entries:
            cache = MlxPromptCache(max_tokens=options.prompt_cache_tokens, max_entries=options.prompt_cache_entries)
        return cls(MlxBackend.load(spec, parallel=options.parallel, prompt_cache=cache), options.parallel)

    # --- the contract -------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self._parallel - self.model.decoder.active())

    def active(self) -> int:
        return len(self._jobs) + len(self._failed)

    def admit(self, job: Job) -> None:
        request = job.request
        sequences: list[MlxSequence] = []
        try:
            for index in range(request.n):
                started, sequence = self.model.begin(request, index=index, emit=job.emit)
                sequence.owner = job
                sequences.append(sequence)
        except Exception as exc:
            for sequence in sequences:
                self.model.decoder.cancel(sequence, report=False)
            if not isinstance(exc, ServiceError):
                logger.exception("Admitting a request failed")
                exc = InternalError(ADMIT_FAILED)
            job.emit(Failed(exc))
            self._failed.append(job)
            return
        job.emit(started)
        self._jobs[job] = sequences

    def step(self) -> list[Job]:
        done, self._failed = self._failed, []
        for sequence in self.model.decoder.step():
            job = sequence.owner
            sequences = self._jobs.get(job)
            if sequences is None:
                continue
            sequences.remove(sequence)
            if sequence.error is not None:  # the constraint failed mid-way: the whole request fails
                for other in sequences:
                    self.model.decoder.cancel(other, report=False)
                job.emit(Failed(sequence.error))
                sequences.clear()
            if not sequences:
                del self._jobs[job]
                done.append(job)
        return done

    def abort(self, job: Job) -> None:
        """Each unfinished choice ends "cancelled" with the tokens it has; its sequence leaves the batch."""
        if job in self._failed:
            self._failed.remove(job)
            return
        for sequence in self._jobs.pop(job, ()):
            self.model.decoder.cancel(sequence)

    def stats(self) -> EngineStats:
        """Sequences running; counters: `steps`, `prompt_tokens` (of the choices served),
        `prompt_tokens_evaluated` (prefilled here), `prompt_tokens_reused` (copied from a kept KV cache),
        `prompt_cache_tokens` and `prompt_cache_entries` (kept now for prompt reuse)."""
        decoder = self.model.decoder
        cache = decoder.prompt_cache
        kept = {"prompt_cache_tokens": cache.tokens if cache else 0, "prompt_cache_entries": len(cache) if cache else 0}
        return EngineStats(active=decoder.active(), slots=self._parallel, counters={**decoder.counters, **kept})

    def close(self) -> None:
        self._jobs.clear()
        self._failed.clear()
        self.model.close()
