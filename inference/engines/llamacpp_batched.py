"""Continuous batching on llama.cpp: one `llama_context`, `parallel` sequences, one `llama_decode` per step.

Each step decodes the last sampled token of every generating sequence together with a bounded
chunk of the prompts still prefilling (so a long prompt never stalls the others), then samples
every sequence that has logits with its own sampler chain. The KV cache is not unified and flash
attention is on: each sequence has its own `n_ctx` cells, and a request's greedy answer is the
same batched as alone. `n > 1` choices prefill the prompt once and copy its cells. A finished
sequence's slot is free at once; its cells stay as a prefix cache that the next prompt starting
the same way reuses (llama-server's `cache_prompt`). Every constrained sequence has its own
matcher (structured output, tool calls: inference/constraints); a step fills the masks of all of
them at once (llguidance's threads) and masks their logits rows in place before sampling.

Every method runs on the model's owner thread (the engine contract: inference/engines/base.py).
https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md (slots)
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from llmservice.errors import InternalError, ModelUnavailable, ServiceError

from ..constraints import allocate_bitmask, apply_bitmask, fill_masks
from ..events import Failed, Started
from ..llamacpp_common import (
    UNPREPARED, PromptBuilder, SequenceConstraint, TokenText, checked_logit_bias, constraint_compiler, free_context,
    gguf_context, gguf_model_load, log_softmax, spec_problems,
)
from ..options import options_load
from ..params import ModelSpec
from .base import EngineStats, Job
from .llamacpp_batch import TokenBatch
from .llamacpp_context import BatchedLlamaOptions, context_params, kv_cache_bytes
from .llamacpp_sequences import Decoding, Slot, sampler_chain

logger = logging.getLogger(__name__)

DECODE_FAILED = "The model failed while generating (llama_decode returned {code}); see the server log."


class _Admitted:
    """One admitted job: its prompt and its choices (some may wait for a free slot)."""

    __slots__ = ("job", "decodings", "waiting", "remaining")

    def __init__(self, job: Job, decodings: list[Decoding]):
        self.job = job
        self.decodings = decodings
        self.waiting: deque[Decoding] = deque(decodings)
        self.remaining = len(decodings)


class BatchedLlamaEngine:
    """A GGUF chat model serving up to `parallel` sequences at once."""

    kinds: ClassVar[frozenset[str]] = frozenset({"chat"})
    options: ClassVar[type[BaseModel]] = BatchedLlamaOptions

    def __init__(self, spec: ModelSpec, opts: BatchedLlamaOptions, model: Any, ctx: Any):
        import llama_cpp

        self.spec = spec
        self.opts = opts
        self._lib = llama_cpp
        self._model = model
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._vocab = model.vocab
        self._n_vocab = model.n_vocab()
        self.n_ctx = min(opts.n_ctx, llama_cpp.llama_n_ctx_seq(ctx))
        self._prompts = PromptBuilder(model, opts.chat_format)
        self._text = TokenText(self._vocab)
        self._stop_ids = self._prompts.stop_token_ids
        self.tool_format = self._prompts.tool_format
        self.constraint_compiler = constraint_compiler(self._vocab, self._n_vocab, self._prompts)
        self._bitmask = allocate_bitmask(self._n_vocab, opts.parallel)  # one row per sequence sampled in a step
        self._slots = [Slot(seq) for seq in range(opts.parallel)]
        self._batch = TokenBatch(llama_cpp, max(opts.n_batch, opts.parallel))
        self._jobs: dict[int, _Admitted] = {}  # by id(job), in admission order
        self._waiting: deque[_Admitted] = deque()  # jobs with choices still to start
        self._done: list[Job] = []  # jobs finished outside step() (failed at admission)
        self._clock = 0
        self._counters = dict(steps=0, prompt_tokens=0, prompt_tokens_evaluated=0, prompt_tokens_reused=0,
                              prompt_tokens_shared=0)

    # --- loading ----------------------------------------------------------------------------
    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        return spec_problems(spec)

    @classmethod
    def load(cls, spec: ModelSpec) -> "BatchedLlamaEngine":
        problems = cls.check(spec)
        if problems:
            raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.")
        opts = options_load(BatchedLlamaOptions, spec)
        import llama_cpp

        model = gguf_model_load(spec, opts.n_gpu_layers)
        ctx = gguf_context(spec, model, context_params(llama_cpp, opts))
        engine = cls(spec, opts, model, ctx)
        logger.info("%s: %d sequences x %d tokens = %d KV cells (about %.0f MiB)", spec.name, opts.parallel,
                    engine.n_ctx, opts.parallel * engine.n_ctx, kv_cache_bytes(llama_cpp, model.model, opts) / 2**20)
        return engine

    def close(self) -> None:
        for admitted in list(self._jobs.values()):
            self._drop(admitted)
        self._batch.free()
        if self._ctx is not None:
            free_context(self._ctx)
            self._ctx = None
        self._model.close()

    # --- the contract -------------------------------------------------------------------------
    def free_slots(self) -> int:
        """Jobs admit() takes now: free sequences, once every admitted job's choices have one."""
        if self._waiting:
            return 0
        return sum(1 for s in self._slots if s.decoding is None)

    def active(self) -> int:
        return len(self._jobs)

    def admit(self, job: Job) -> None:
        """Tokenize the job's prompt and start its choices in free slots (the rest wait for one)."""
        request, compiled = job.request, job.request.compiled
        try:
            if request.constraint is not None and compiled is None:
                raise InternalError(UNPREPARED)
            prompt = self._prompts.build(request)
            prompt.check_fits(self.n_ctx)
            bias = checked_logit_bias(request.sampling.logit_bias, self._n_vocab) if request.sampling.logit_bias else None
        except ServiceError as exc:
            job.emit(Failed(exc))
            self._done.append(job)
            return
        budget = self.n_ctx - len(prompt.tokens)
        if request.sampling.max_tokens is not None:
            budget = min(budget, request.sampling.max_tokens)
        decodings = []
        for index in range(request.n):
            sampling = request.choice(index).sampling
            decoding = Decoding(job, index, prompt, sampling, budget)
            decoding.chain = sampler_chain(self._lib, self._n_vocab, sampling, bias)
            if compiled is not None:
                decoding.constraint = SequenceConstraint(compiled)  # its own matcher and guard
            decodings.append(decoding)
        admitted = _Admitted(job, decodings)
        self._jobs[id(job)] = admitted
        self._counters["prompt_tokens"] += len(prompt.tokens) * request.n
        relaxed = tuple(str(r) for r in compiled.relaxed) if compiled else ()
        job.emit(Started(len(prompt.tokens), prompt.echo, tool_format=self.tool_format.name, relaxed=relaxed,
                         thinking=prompt.thinking))
        self._waiting.append(admitted)
        self._start_waiting()

    def abort(self, job: Job) -> None:
        """Stop the job now: its unfinished choices end "cancelled" and their slots are free."""
        admitted = self._jobs.get(id(job))
        if admitted is None:
            return
        for decoding in admitted.decodings:
            if not decoding.done:
                decoding.finish("cancelled")
        self._drop(admitted)
        self._start_waiting()

    def step(self) -> list[Job]:
        """Decode one token of every generating sequence and a chunk of the prefilling ones;
        returns the jobs whose every choice has finished (or that failed)."""
        done, self._done = self._done, []
        batch = self._batch
        batch.clear()
        scheduled: list[tuple[Decoding, int]] = []
        for slot in self._slots:
            d = slot.decoding
            if d is not None and d.pending and not d.prefilling:
                d.out = batch.add(d.pending[0], d.pos, slot.seq, True)
                d.row = batch.outputs - 1
                scheduled.append((d, 1))
        room = min(batch.room, self.opts.prefill_chunk)
        for admitted in self._jobs.values():  # oldest first
            for d in admitted.decodings:
                if room <= 0 or d.slot is None or d.done or not d.pending or not d.prefilling:
                    continue
                take = min(room, len(d.pending))
                last = take == len(d.pending)
                index = batch.add_run(d.pending[:take], d.pos, d.slot.seq, last)
                d.out, d.row = (index, batch.outputs - 1) if last else (None, 0)
                scheduled.append((d, take))
                room -= take
                self._counters["prompt_tokens_evaluated"] += take
        if not scheduled:
            return done
        code = batch.decode(self._ctx)
        self._counters["steps"] += 1
        self._clock += 1
        if code != 0:
            logger.error("%s: llama_decode returned %d for %d tokens", self.spec.name, code, batch.n)
            for d, _ in scheduled:
                self._fail(self._jobs.get(id(d.job)), InternalError(DECODE_FAILED.format(code=code)), done, clear=True)
            return done
        ready: list[Decoding] = []  # the sequences that sample a token this step
        for d, fed in scheduled:
            d.slot.tokens.extend(d.pending[:fed])
            d.pos += fed
            del d.pending[:fed]
            if d.pending:  # more of the prompt to prefill
                continue
            ready.append(d)
            followers, d.followers = d.followers, []
            for f in followers:
                self._copy_prefill(d, f)
                f.out, f.row = d.out, d.row  # the same logits row; each samples with its own chain
                ready.append(f)
        self._sample_all(ready, batch.logits(self._ctx, self._n_vocab), done)
        self._start_waiting()
        return done

    def stats(self) -> EngineStats:
        """Sequences running and the KV cells they hold; counters: `steps`, `prompt_tokens` (of the
        choices served), `prompt_tokens_evaluated` (decoded here), `prompt_tokens_reused` (found in a
        free sequence's cells), `prompt_tokens_shared` (copied from a sibling choice's prefill, n > 1),
        `kv_cells_cached` (held by free sequences for prompt reuse)."""
        used = sum(len(s.tokens) for s in self._slots if s.decoding is not None)
        cached = sum(len(s.tokens) for s in self._slots if s.decoding is None)
        return EngineStats(
            active=sum(1 for s in self._slots if s.decoding is not None), slots=len(self._slots),
            kv_cells_used=used, kv_cells_total=self.n_ctx * len(self._slots),
            counters={**self._counters, "kv_cells_cached": cached},
        )

    # --- inside a step ------------------------------------------------------------------------
    def _sample_all(self, ready: list[Decoding], logits: np.ndarray, done: list[Job]) -> None:
        """Logprobs from the raw rows, then every constraint's mask (filled together), then sampling."""
        raw = {d.row: log_softmax(logits[d.row]) for d in ready if d.top_logprobs is not None}
        constrained = [d for d in ready if d.constraint is not None]
        if constrained:
            fill_masks([(d.constraint.matcher, i) for i, d in enumerate(constrained)], self._bitmask)
            for i, d in enumerate(constrained):
                apply_bitmask(logits[d.row], self._bitmask[i])  # in place: the sampler chain reads this memory
        for d in ready:
            if not d.done:  # its job failed earlier in this loop
                self._sample(d, logits, raw.get(d.row) if d.top_logprobs is not None else None, done)

    def _sample(self, d: Decoding, logits: np.ndarray, logprobs: np.ndarray | None, done: list[Job]) -> None:
        admitted = self._jobs[id(d.job)]
        try:
            token = d.sample(self._lib, self._ctx, logits)
            ends = token in self._stop_ids or self._lib.llama_vocab_is_eog(self._vocab, token)
            reason = d.accept(token, ends, self._text, logprobs)
        except ServiceError as exc:  # the constraint could not be followed: this job fails, not the others
            self._fail(admitted, exc, done)
            return
        except Exception:
            logger.exception("%s: sampling failed", self.spec.name)
            self._fail(admitted, InternalError("The model failed while generating; see the server log."), done)
            return
        if reason is None:
            return
        d.finish(reason)
        self._release(d)
        admitted.remaining -= 1
        if admitted.remaining == 0:
            del self._jobs[id(admitted.job)]
            done.append(admitted.job)

    def _copy_prefill(self, primary: Decoding, follower: Decoding) -> None:
        """Give a sibling choice the primary's prompt cells: prefilled once for all n choices."""
        lib, mem, seq = self._lib, self._mem, follower.slot.seq
        lib.llama_memory_seq_rm(mem, seq, -1, -1)
        lib.llama_memory_seq_cp(mem, primary.slot.seq, seq, -1, -1)  # whole sequences only, across streams
        follower.slot.tokens = list(primary.slot.tokens)
        follower.pos = primary.pos
        self._counters["prompt_tokens_shared"] += primary.pos

    # --- slots -------------------------------------------------------------------------------
    def _start_waiting(self) -> None:
        """Give free slots to waiting choices, oldest job first."""
        while self._waiting:
            admitted = self._waiting[0]
            while admitted.waiting:
                free = [s for s in self._slots if s.decoding is None]
                if not free:
                    return
                d = admitted.waiting.popleft()
                self._place(d, free, admitted)
            self._waiting.popleft()

    def _place(self, d: Decoding, free: list[Slot], admitted: _Admitted) -> None:
        """Start `d` in the free slot whose cells share the longest prefix with its prompt."""
        primary = admitted.decodings[0]
        if d is not primary and primary.slot is not None and primary.prefilling:
            slot = min(free, key=lambda s: s.last_used)  # it will copy the primary's cells: take the stalest
            d.slot, slot.decoding, slot.last_used = slot, d, self._clock
            primary.followers.append(d)
            return
        tokens = np.asarray(d.prompt.tokens, dtype=np.int32)
        best, slot = max(((s.common_prefix(tokens), s) for s in free), key=lambda pair: (pair[0], pair[1].last_used))
        if not self.opts.prompt_reuse:
            best = 0
        if best == 0:
            slot = min(free, key=lambda s: s.last_used)
        reuse = min(best, len(tokens) - 1)  # at least one token to decode: its logits start the answer
        if not self._lib.llama_memory_seq_rm(self._mem, slot.seq, reuse, -1):
            # A memory that can't drop a suffix (recurrent models): start the slot over.
            self._lib.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
            reuse = 0
        del slot.tokens[reuse:]
        d.start(slot, reuse)
        slot.last_used = self._clock
        self._counters["prompt_tokens_reused"] += reuse

    def _release(self, d: Decoding) -> None:
        """The choice is over: its slot is free now; its cells stay as a prefix cache."""
        slot = d.slot
        if slot is not None and slot.decoding is d:
            slot.decoding = None
            slot.last_used = self._clock
        if d.chain is not None:
            self._lib.llama_sampler_free(d.chain)
            d.chain = None

    def _fail(self, admitted: _Admitted | None, error: ServiceError, done: list[Job], clear: bool = False) -> None:
        """End the job with `error`; its choices' slots are free (emptied when their cells are suspect)."""
        if admitted is None or id(admitted.job) not in self._jobs:
            return
        admitted.job.emit(Failed(error))
        for d in admitted.decodings:
            if clear and d.slot is not None and d.slot.decoding is d:
                self._lib.llama_memory_seq_rm(self._mem, d.slot.seq, -1, -1)
                d.slot.tokens.clear()
            d.done = True
        self._drop(admitted)
        done.append(admitted.job)

    def _drop(self, admitted: _Admitted) -> None:
        for d in admitted.decodings:
            d.done = True
            self._release(d)
        self._jobs.pop(id(admitted.job), None)
        if admitted in self._waiting:
            self._waiting.remove(admitted)
