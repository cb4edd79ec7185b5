"""Legacy completions request schema, fields in the spec's order.

https://platform.openai.com/docs/api-reference/completions/create
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from pydantic import Field

from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import InvalidRequest

from .common import SamplingExtensions, StreamOptions, refuse, sampling, sampling_from
from .structured import ResponseFormat, StructuredOutputExtensions, json_output, one_constraint

OPENAI_DEFAULT_MAX_TOKENS = 16  # the completions endpoint's documented default
EMPTY_PROMPT = "'prompt' must not be empty: send at least one character or token."
EMPTY_PROMPT_ITEM = "'prompt' item {index} is empty: every prompt needs at least one character or token."
TOO_MANY_GENERATIONS = (
    "This request asks for {count} generations ({prompts} prompts x n={n}); at most {limit} are allowed "
    "in one request (COMPLETIONS_MAX_GENERATIONS)."
)


class CompletionRequest(SamplingExtensions, StructuredOutputExtensions):
    """POST /v1/completions (the extensions' fields are in their base classes)"""

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = Field(None, ge=1)
    echo: bool | None = None
    frequency_penalty: float | None = sampling("frequency_penalty")
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=16)
    presence_penalty: float | None = sampling("presence_penalty")
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = sampling("temperature")
    top_p: float | None = sampling("top_p")
    user: str | None = None
    # Extension (not in the legacy completions spec): the chat endpoint's response_format.
    response_format: ResponseFormat | None = None

    def prompts(self) -> list[str | tuple[int, ...]]:
        """The prompts to complete: one per string (or token list) given; none may be empty
        (llama.cpp cannot decode zero tokens)."""
        prompt: Any = self.prompt
        if not prompt:
            raise InvalidRequest(EMPTY_PROMPT, param="prompt")
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [tuple(prompt)]
        for index, item in enumerate(prompt):
            if not item:
                raise InvalidRequest(EMPTY_PROMPT_ITEM.format(index=index), param="prompt")
        return [p if isinstance(p, str) else tuple(p) for p in prompt]

    def to_generations(self, spec: ModelSpec) -> list[GenerationRequest]:
        """One neutral request per prompt; refuses what this server can't honour."""
        if self.suffix is not None:
            raise refuse("suffix")
        if self.best_of not in (None, 1) and self.best_of != (self.n or 1):
            raise refuse("best_of", " (only best_of equal to n)")
        if self.echo and self.logprobs is not None:
            raise refuse("echo", " together with logprobs (prompt logprobs are not computed)")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        defaults = {"max_tokens": OPENAI_DEFAULT_MAX_TOKENS, **spec.defaults}
        sampling = sampling_from(
            self,
            defaults,
            max_tokens=self.max_tokens,
            extra=[("logprobs", self.logprobs is not None), ("top_logprobs", self.logprobs or 0)],
        )
        constraint = one_constraint(
            [("response_format", json_output(self.response_format)), *self.extension_constraints()], stop=self.stop
        )
        if constraint is not None and self.echo:
            raise refuse("echo", " together with an output constraint (the prompt is not part of the output)")
        prompts, n = self.prompts(), self.n or 1
        if len(prompts) * n > settings.COMPLETIONS_MAX_GENERATIONS:
            raise InvalidRequest(
                TOO_MANY_GENERATIONS.format(
                    count=len(prompts) * n, prompts=len(prompts), n=n, limit=settings.COMPLETIONS_MAX_GENERATIONS
                ),
                param="n" if len(prompts) == 1 else "prompt",
            )
        return [GenerationRequest(sampling=sampling, prompt=p, echo=bool(self.echo), constraint=constraint, n=n) for p in prompts]
