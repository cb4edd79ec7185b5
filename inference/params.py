"""Neutral request types the backends see: no HTTP, no Django models.

Soft defaults: a value the request gives wins; else the tier's default; else the engine default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .constraints.types import Constraint

if TYPE_CHECKING:
    from .constraints.compiler import CompiledConstraint

from .admission import QueueLimits
from .keep_alive import keep_alive_bound



@dataclass(frozen=True, slots=True)
class SamplingField:
    """One sampling knob: its engine default, bounds and description. `SAMPLING_TABLE` drives the
    request schemas' fields, the tier's soft defaults (`Tier.SAMPLING_FIELDS`, `<TIER>_<NAME>`
    in .env.example) and `resolve_sampling`, so a new knob is one row here (and its column)."""

    name: str
    default: Any  # the engine default: OpenAI's for OpenAI fields, llama.cpp's for the extensions
    description: str
    ge: float | None = None
    le: float | None = None
    extension: bool = False  # not in the OpenAI spec


SAMPLING_TABLE: tuple[SamplingField, ...] = (
    SamplingField("temperature", 1.0, "Sampling temperature; 0 is greedy.", ge=0, le=2),
    SamplingField("top_p", 1.0, "Nucleus sampling: keep the most likely tokens up to this probability mass.", ge=0, le=1),
    SamplingField("top_k", 40, "Extension: sample from the k most likely tokens (0: all).", ge=0, extension=True),
    SamplingField("min_p", 0.05, "Extension: drop tokens below min_p x the top one.", ge=0, le=1, extension=True),
    SamplingField("repeat_penalty", 1.0, "Extension: llama.cpp's repetition penalty.", ge=0, extension=True),
    SamplingField("presence_penalty", 0.0, "Penalize tokens that already appeared.", ge=-2, le=2),
    SamplingField("frequency_penalty", 0.0, "Penalize tokens by how often they appeared.", ge=-2, le=2),
    SamplingField("max_tokens", None, "Most tokens to generate (None: until the model stops or the context is full).", ge=1),
    SamplingField("stop", (), "Up to 4 strings that end the answer."),
)
SAMPLING_FIELDS = {f.name: f for f in SAMPLING_TABLE}
ENGINE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in SAMPLING_TABLE}
DEFAULTABLE = tuple(ENGINE_DEFAULTS)


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Everything that decides how tokens are chosen for one generation."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logit_bias: Mapping[int, float] | None = None
    logprobs: bool = False
    top_logprobs: int = 0

    def with_seed(self, seed: int | None) -> "SamplingParams":
        return dataclasses.replace(self, seed=seed)


def resolve_sampling(
    requested: Mapping[str, Any], tier_defaults: Mapping[str, Any]
) -> SamplingParams:
    """Merge a request's values over a tier's soft defaults over the engine defaults.

    `requested` may hold None for "not given"; only DEFAULTABLE fields fall back.
    """
    values: dict[str, Any] = {}
    for name, engine_default in ENGINE_DEFAULTS.items():
        value = requested.get(name)
        if value is None:
            value = tier_defaults.get(name)
        if value is None:
            value = engine_default
        values[name] = value
    values["stop"] = tuple(values["stop"] or ())
    for name in ("seed", "logit_bias", "logprobs", "top_logprobs"):
        if requested.get(name) is not None:
            values[name] = requested[name]
    return SamplingParams(**values)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, already flattened to text."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # tool_calls, tool_call_id, ...

    def as_template_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            data["name"] = self.name
        data.update(self.extra)
        return data


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One prompt (chat messages, or a raw prompt as text or token ids) and its `n` choices.

    Events of choice i carry `index=i`; with a seed, choice i samples with `seed + i`.
    A `constraint` is compiled for the loaded model before the request is queued (the manager's
    prepare step sets `compiled`); backends use only `compiled`.
    """

    sampling: SamplingParams
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | tuple[int, ...] | None = None
    echo: bool = False
    constraint: Constraint | None = None
    n: int = 1
    compiled: "CompiledConstraint | None" = None
    thinking: bool | None = None  # the chat template's thinking switch (inference/thinking.py); None: its default

    def choice(self, index: int) -> "GenerationRequest":
        """The single-choice request for choice `index` (its own seed)."""
        if self.n == 1:
            return self
        seed = self.sampling.seed
        return dataclasses.replace(
            self, n=1, sampling=self.sampling.with_seed(None if seed is None else seed + index)
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A tier's configuration as the inference layer needs it: a snapshot, not a DB row."""

    name: str
    backend: str
    kind: str
    model_path: str
    load: Mapping[str, Any]  # n_ctx, n_threads, chat_format, ... (backend-specific)
    defaults: Mapping[str, Any]  # soft sampling defaults
    aliases: tuple[str, ...] = ()
    limits: QueueLimits = QueueLimits()  # admission (inference/admission.py); not part of either key
    # Both keys are hashed once, when the snapshot is made: every request reads them several times.
    load_key: str = field(init=False, repr=False, compare=False)
    config_key: str = field(init=False, repr=False, compare=False)
    # Idle unload (inference/keep_alive.py), in seconds, math.inf: never; not part of either key.
    keep_alive: float = math.inf  # after the last request ends (a request may ask for its own)
    keep_alive_max: float = math.inf  # the most a request may ask for

    def with_keep_alive(self, requested: float | None) -> "ModelSpec":
        """This spec with a request's keep_alive (None: not given), bounded by `keep_alive_max`."""
        if requested is None:
            return self
        return dataclasses.replace(
            self, keep_alive=keep_alive_bound(requested, default=self.keep_alive, maximum=self.keep_alive_max)
        )

    def __post_init__(self) -> None:
        # load_key changes exactly when the loaded instance must be replaced; config_key whenever
        # anything that can change an answer changes.
        load = json.dumps([self.backend, self.model_path, dict(self.load)], sort_keys=True)
        load_key = hashlib.sha256(load.encode()).hexdigest()[:16]
        config = json.dumps([load_key, dict(self.defaults)], sort_keys=True, default=list)
        object.__setattr__(self, "load_key", load_key)
        object.__setattr__(self, "config_key", hashlib.sha256(config.encode()).hexdigest()[:16])
