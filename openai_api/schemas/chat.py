"""Chat completions request schema, fields in the spec's order.

https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from inference.params import ChatMessage, GenerationRequest, ModelSpec
from llmservice.errors import InvalidRequest

from .common import SamplingExtensions, StreamOptions, StrictModel, refuse, sampling, sampling_from
from .structured import (
    FunctionTool,
    ResponseFormat,
    StructuredOutputExtensions,
    ToolChoice,
    json_output,
    one_constraint,
    tool_calls_allowed,
)


THINKING_OFF = ("none", "minimal")  # reasoning_effort values that turn a template's thinking off


# --- message content parts ---------------------------------------------------------------------
class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ImagePart(StrictModel):
    type: Literal["image_url"]
    image_url: dict[str, Any]


class AudioPart(StrictModel):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class FilePart(StrictModel):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(StrictModel):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[Union[TextPart, ImagePart, AudioPart, FilePart], Field(discriminator="type")]
AssistantPart = Annotated[Union[TextPart, RefusalPart], Field(discriminator="type")]


# --- messages ----------------------------------------------------------------------------------
class FunctionCall(StrictModel):
    name: str
    arguments: str


class ToolCall(StrictModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(StrictModel):
    role: Literal["system", "developer"]
    content: str | list[TextPart]
    name: str | None = None


class UserMessage(StrictModel):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(StrictModel):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(StrictModel):
    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str


Message = Annotated[
    Union[SystemMessage, UserMessage, AssistantMessage, ToolMessage], Field(discriminator="role")
]


class ChatCompletionRequest(SamplingExtensions, StructuredOutputExtensions):
    """POST /v1/chat/completions (the extensions' fields are in their base classes)"""

    messages: list[Message] = Field(..., min_length=1)
    model: str
    audio: Any = None
    frequency_penalty: float | None = sampling("frequency_penalty")
    function_call: Any = None
    functions: Any = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="Deprecated in favour of max_completion_tokens.")
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    n: int | None = Field(None, ge=1, le=16)
    parallel_tool_calls: bool | None = None
    prediction: Any = None
    presence_penalty: float | None = sampling("presence_penalty")
    prompt_cache_key: str | None = Field(
        None, max_length=1024, description="Accepted, no output contract: a hint for reusing a prompt's cache."
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = Field(
        None,
        description="Sets the chat template's thinking switch (Qwen3's enable_thinking): none/minimal off, "
        "low/medium/high on. A 400 for a model whose template has no switch.",
    )
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = Field(
        None, max_length=1024, description="Accepted, no output contract: a stable id of the end user (logs only)."
    )
    seed: int | None = None
    service_tier: str | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = sampling("temperature")
    tool_choice: ToolChoice | None = None
    tools: list[FunctionTool] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = sampling("top_p")
    user: str | None = None
    verbosity: Any = Field(None, description="Refused (400): no length control to honour it with.")
    web_search_options: Any = None

    def to_generation(self, spec: ModelSpec) -> GenerationRequest:
        """The neutral request the backend runs; refuses what this server can't honour."""
        self._refuse_unsupported()
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        sampling = sampling_from(
            self,
            dict(spec.defaults),
            max_tokens=self.max_completion_tokens or self.max_tokens,
            extra=[("logprobs", bool(self.logprobs)), ("top_logprobs", self.top_logprobs or 0)],
        )
        constraint = one_constraint(
            [
                ("tools", tool_calls_allowed(self.tools, self.tool_choice, self.parallel_tool_calls)),
                ("response_format", json_output(self.response_format)),
                *self.extension_constraints(),
            ],
            stop=self.stop,
        )
        messages = tuple(_flatten(m, i) for i, m in enumerate(self.messages))
        thinking = None if self.reasoning_effort is None else self.reasoning_effort not in THINKING_OFF
        return GenerationRequest(sampling=sampling, messages=messages, constraint=constraint, n=self.n or 1,
                                 thinking=thinking)

    def _refuse_unsupported(self) -> None:
        for param in ("audio", "prediction", "verbosity", "web_search_options", "functions", "function_call"):
            if getattr(self, param) is not None:
                raise refuse(param)
        if self.modalities not in (None, ["text"]):
            raise refuse("modalities", " (only ['text'])")
        if self.store:
            raise refuse("store", " (completions are not stored)")
        if self.service_tier not in (None, "auto", "default"):
            raise refuse("service_tier", " (only 'auto' or 'default')")


def _flatten(message: Message, index: int) -> ChatMessage:
    """One message with its content parts joined into text; non-text parts are refused."""
    content = message.content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, RefusalPart):
                texts.append(part.refusal)
            else:
                raise refuse(f"messages.{index}.content.{j}", f" (content type '{part.type}': this model reads text only)")
        content = "".join(texts)
    if content is None:
        content = ""  # an assistant turn that only called tools
    role = "system" if message.role == "developer" else message.role
    extra: dict[str, Any] = {}
    if isinstance(message, AssistantMessage) and message.tool_calls:
        extra["tool_calls"] = [c.model_dump() for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        extra["tool_call_id"] = message.tool_call_id
    return ChatMessage(role=role, content=content, name=getattr(message, "name", None), extra=extra)
