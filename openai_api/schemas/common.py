"""Pieces shared by the chat and completions request schemas, and their conversion to params."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inference.keep_alive import duration_parse

from inference.params import SAMPLING_FIELDS, SAMPLING_TABLE, SamplingParams, resolve_sampling
from llmservice.errors import InvalidRequest, UnsupportedParameter

NOT_SUPPORTED = "'{param}' is not supported by this server{why}."


class StrictModel(BaseModel):
    """Unknown fields are refused (OpenAI: 'Unrecognized request argument supplied')."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(StrictModel):
    """https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options"""

    include_obfuscation: bool | None = Field(
        None, description="Accepted, no effect: chunks never carry OpenAI's `obfuscation` padding field."
    )
    include_usage: bool | None = None


def sampling(name: str) -> Any:
    """The request field of sampling knob `name`: optional, bounded and described by its row in
    `inference.params.SAMPLING_TABLE`."""
    row = SAMPLING_FIELDS[name]
    return Field(None, ge=row.ge, le=row.le, description=row.description)


class KeepAliveExtension(StrictModel):
    """llmservice extension, not in the OpenAI spec: Ollama's `keep_alive` (README "Operations")."""

    keep_alive: float | str | None = Field(
        None,
        description='Extension: how long the model stays loaded after this request: seconds, or "30s", "5m", "1h"; '
        "0: unload right after it; negative: as long as allowed. Bounded by the tier's keep_alive_max; "
        "not part of the cache key.",
    )

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _duration(cls, value):
        """Seconds as a float (math.inf: never); a ValueError names the formats."""
        return None if value is None else duration_parse(value)


class SamplingExtensions(KeepAliveExtension):
    """llmservice extensions, not in the OpenAI spec: llama.cpp sampling knobs."""

    top_k: int | None = sampling("top_k")
    min_p: float | None = sampling("min_p")
    repeat_penalty: float | None = sampling("repeat_penalty")


def refuse(param: str, why: str = "") -> UnsupportedParameter:
    return UnsupportedParameter(NOT_SUPPORTED.format(param=param, why=why), param=param)


def stop_list(stop: str | list[str] | None) -> list[str] | None:
    if stop is None:
        return None
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > 4:
        raise InvalidRequest("'stop' takes at most 4 sequences.", param="stop")
    return stops


def logit_bias_map(bias: dict[str, float] | None) -> dict[int, float] | None:
    if not bias:
        return None
    parsed = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(f"logit_bias keys must be token ids; got '{key}'.", param="logit_bias") from None
        if not -100 <= value <= 100:
            raise InvalidRequest("logit_bias values must be between -100 and 100.", param="logit_bias")
        parsed[token] = float(value)
    return parsed


def sampling_from(
    request: Any, tier_defaults: dict[str, Any], *, max_tokens: int | None, extra: Iterable[tuple[str, Any]] = ()
) -> SamplingParams:
    """The request's sampling values (every row of SAMPLING_TABLE) over the tier's soft defaults."""
    requested = {f.name: getattr(request, f.name, None) for f in SAMPLING_TABLE}
    requested.update(
        max_tokens=max_tokens,
        stop=stop_list(request.stop),
        seed=request.seed,
        logit_bias=logit_bias_map(request.logit_bias),
        **dict(extra),
    )
    return resolve_sampling(requested, tier_defaults)
