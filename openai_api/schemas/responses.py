"""Responses API request schema, fields in the spec's order, and its conversion to the neutral request.

https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter

from inference.constraints import AnyJsonObject, Constraint, JsonSchema, ToolCalls
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import InvalidRequest, UnsupportedParameter

from .common import SamplingExtensions, StrictModel, refuse
from .structured import NAME_PATTERN, FunctionDefinition, FunctionName, FunctionTool, NamedToolChoice, one_constraint, tool_calls_allowed

BUILTIN_TOOL = "Built-in tool '{kind}' is not supported by this server: only function tools ('type': 'function') are."
BUILTIN_TOOL_CHOICE = "'tool_choice' of type '{kind}' is not supported by this server: only function tools are."
UNKNOWN_ITEM = "Input items of type '{kind}' are not supported by this server."
NOT_TEXT = " (content type '{kind}': this model reads text only)"
EMPTY_INPUT = "'input' must not be empty (or give 'previous_response_id')."


# --- input content parts --------------------------------------------------------------------------
class InputText(StrictModel):
    type: Literal["input_text"]
    text: str


class OutputText(StrictModel):
    """An assistant turn handed back (an earlier response's output)."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(StrictModel):
    type: Literal["refusal"]
    refusal: str


class OtherPart(StrictModel):
    """input_image, input_file, input_audio, ...: refused by name in `to_generation`."""

    model_config = {"extra": "allow"}
    type: str


# Tags name union members in error locations; capitalised, so errors name the client's fields only.
_PART_TAGS = {"input_text": "InputText", "output_text": "OutputText", "refusal": "Refusal"}
_ITEM_TAGS = {"message": "Message", "function_call": "FunctionCall", "function_call_output": "FunctionCallOutput",
              "reasoning": "Reasoning"}


def _kind(value: Any, default: str | None = None) -> str | None:
    """An item's or part's `type`; None when it is not a string (a list is no tag: the 400 names it)."""
    kind = value.get("type", default) if isinstance(value, dict) else getattr(value, "type", default)
    return kind if isinstance(kind, str) else None


def _part_tag(value: Any) -> str:
    kind = _kind(value)
    return _PART_TAGS.get(kind, "Other")


ContentPart = Annotated[
    Union[
        Annotated[InputText, Tag("InputText")],
        Annotated[OutputText, Tag("OutputText")],
        Annotated[Refusal, Tag("Refusal")],
        Annotated[OtherPart, Tag("Other")],
    ],
    Discriminator(_part_tag),
]


# --- input items ---------------------------------------------------------------------------------
class MessageItem(StrictModel):
    """A message: the easy form ({role, content}) or an item ({type: "message", ...})."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class FunctionCallItem(StrictModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(StrictModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None
    status: str | None = None


class ReasoningItem(StrictModel):
    """An earlier answer's thinking handed back: accepted, not shown to the model again
    (chat templates drop past thinking too)."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[Any] = []
    content: list[Any] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class OtherItem(StrictModel):
    """item_reference, computer_call_output, ...: refused by name in `to_generation`."""

    model_config = {"extra": "allow"}
    type: str


def _item_tag(value: Any) -> str:
    return _ITEM_TAGS.get(_kind(value, "message"), "Other")


InputItem = Annotated[
    Union[
        Annotated[MessageItem, Tag("Message")],
        Annotated[FunctionCallItem, Tag("FunctionCall")],
        Annotated[FunctionCallOutputItem, Tag("FunctionCallOutput")],
        Annotated[ReasoningItem, Tag("Reasoning")],
        Annotated[OtherItem, Tag("Other")],
    ],
    Discriminator(_item_tag),
]


ITEMS = TypeAdapter(list[InputItem])  # a stored conversation's items, read back


def items_json(items: list[InputItem]) -> list[dict]:
    """Items as stored (and as the spec writes them)."""
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]


# --- tools and tool_choice -----------------------------------------------------------------------
class FunctionToolParam(StrictModel):
    type: Literal["function"]
    name: str = Field(..., pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # the Responses API's default is true


class BuiltinTool(StrictModel):
    """web_search, file_search, computer_use_preview, code_interpreter, mcp, ...: refused by name."""

    model_config = {"extra": "allow"}
    type: str


ToolParam = Annotated[
    Union[Annotated[FunctionToolParam, Tag("Function")], Annotated[BuiltinTool, Tag("Builtin")]],
    Discriminator(lambda v: "Function" if _kind(v) == "function" else "Builtin"),
]


class FunctionChoice(StrictModel):
    type: Literal["function"]
    name: str


class OtherToolChoice(StrictModel):
    model_config = {"extra": "allow"}
    type: str


ToolChoiceParam = Union[
    Literal["none", "auto", "required"],
    Annotated[
        Union[Annotated[FunctionChoice, Tag("Function")], Annotated[OtherToolChoice, Tag("Other")]],
        Discriminator(lambda v: "Function" if _kind(v) == "function" else "Other"),
    ],
]


# --- text.format ---------------------------------------------------------------------------------
class FormatText(StrictModel):
    type: Literal["text"]


class FormatJsonObject(StrictModel):
    type: Literal["json_object"]


class FormatJsonSchema(StrictModel):
    type: Literal["json_schema"]
    name: str = Field(..., pattern=NAME_PATTERN)
    schema_: dict[str, Any] = Field(..., alias="schema")
    description: str | None = None
    strict: bool | None = None  # true: a keyword we can't enforce is a 400; else it is relaxed


class TextConfig(StrictModel):
    format: Annotated[
        Union[Annotated[FormatText, Tag("Text")], Annotated[FormatJsonObject, Tag("JsonObject")],
              Annotated[FormatJsonSchema, Tag("JsonSchema")]],
        Discriminator(lambda v: {"text": "Text", "json_object": "JsonObject", "json_schema": "JsonSchema"}.get(_kind(v))),
    ] | None = None
    verbosity: str | None = None


class ReasoningConfig(StrictModel):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesStreamOptions(StrictModel):
    include_obfuscation: bool | None = None  # accepted: no obfuscation padding is ever sent


class ResponseCreateRequest(SamplingExtensions):
    """POST /v1/responses (the sampling extensions' fields are in their base class)"""

    background: bool | None = None
    conversation: Any = None
    include: list[str] | None = None
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    max_tool_calls: int | None = None
    metadata: dict[str, str] | None = None
    model: str
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    prompt: Any = None
    prompt_cache_key: str | None = None  # accepted: a hint only
    prompt_cache_retention: str | None = None  # accepted: a hint only
    reasoning: ReasoningConfig | None = None
    safety_identifier: str | None = None  # accepted: a label only
    service_tier: str | None = None
    store: bool | None = None  # default true, as OpenAI
    stream: bool | None = None
    stream_options: ResponsesStreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    text: TextConfig | None = None
    tool_choice: ToolChoiceParam | None = None
    tools: list[ToolParam] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, ge=0, le=1)
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None

    @property
    def stored(self) -> bool:
        return self.store is not False

    def to_generation(self, spec: ModelSpec, history: list[InputItem]) -> GenerationRequest:
        """The neutral request: `instructions`, then `history` (the earlier turns that
        previous_response_id names, already resolved into items), then this request's input."""
        self._refuse_unsupported()
        messages = input_messages(list(history), prefix="previous_response_id") + input_messages(self.input_items())
        if not messages:
            raise InvalidRequest(EMPTY_INPUT, param="input")
        if self.instructions:
            messages.insert(0, ChatMessage(role="system", content=self.instructions))
        sampling = resolve_sampling(
            {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
             "repeat_penalty": self.repeat_penalty, "max_tokens": self.max_output_tokens},
            dict(spec.defaults),
        )
        constraint = one_constraint([("tools", self.tool_calls()), ("text.format", self.format_constraint())], stop=None)
        return GenerationRequest(sampling=sampling, messages=tuple(messages), constraint=constraint)

    def input_items(self) -> list[InputItem]:
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def tool_calls(self) -> ToolCalls | None:
        tools = []
        for i, tool in enumerate(self.tools or []):
            if isinstance(tool, BuiltinTool):
                raise UnsupportedParameter(BUILTIN_TOOL.format(kind=tool.type), param=f"tools.{i}.type")
            strict = tool.strict is not False
            tools.append(FunctionTool(type="function", function=FunctionDefinition(
                name=tool.name, description=tool.description, parameters=tool.parameters, strict=strict)))
        choice = self.tool_choice
        if isinstance(choice, OtherToolChoice):
            raise UnsupportedParameter(BUILTIN_TOOL_CHOICE.format(kind=choice.type), param="tool_choice")
        if isinstance(choice, FunctionChoice):
            choice = NamedToolChoice(type="function", function=FunctionName(name=choice.name))
        return tool_calls_allowed(tools or None, choice, self.parallel_tool_calls)

    def format_constraint(self) -> Constraint | None:
        fmt = self.text.format if self.text else None
        if isinstance(fmt, FormatJsonObject):
            return AnyJsonObject(param="text.format")
        if isinstance(fmt, FormatJsonSchema):
            return JsonSchema(fmt.schema_, strict=bool(fmt.strict), param="text.format.schema")
        return None

    def _refuse_unsupported(self) -> None:
        for param in ("conversation", "prompt", "max_tool_calls"):
            if getattr(self, param) is not None:
                raise refuse(param)
        if self.background:
            raise refuse("background")
        if self.include:
            raise refuse("include")
        if self.top_logprobs:
            raise refuse("top_logprobs")
        if self.truncation == "auto":
            raise refuse("truncation", " (only 'disabled': an input too long for the context is a 400)")
        if self.service_tier not in (None, "auto", "default"):
            raise refuse("service_tier", " (only 'auto' or 'default')")
        if self.text and self.text.verbosity is not None:
            raise refuse("text.verbosity")
        if self.reasoning and (self.reasoning.effort or self.reasoning.summary or self.reasoning.generate_summary):
            raise refuse("reasoning")


def _text(content: str | list[ContentPart], param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if isinstance(part, OtherPart):
            raise refuse(f"{param}.{j}", NOT_TEXT.format(kind=part.type))
        texts.append(part.refusal if isinstance(part, Refusal) else part.text)
    return "".join(texts)


def input_messages(items: list[InputItem], prefix: str = "input") -> list[ChatMessage]:
    """Items as chat messages: consecutive function calls become one assistant turn with
    `tool_calls` (the shape chat's messages have), their outputs `tool` turns."""
    messages: list[ChatMessage] = []
    pending_calls: list[dict] = []

    def flush() -> None:
        if pending_calls:
            messages.append(ChatMessage(role="assistant", content="", extra={"tool_calls": list(pending_calls)}))
            pending_calls.clear()

    for i, item in enumerate(items):
        if isinstance(item, FunctionCallItem):
            pending_calls.append({"id": item.call_id, "type": "function",
                                  "function": {"name": item.name, "arguments": item.arguments}})
            continue
        flush()
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append(ChatMessage(role=role, content=_text(item.content, f"{prefix}.{i}.content")))
        elif isinstance(item, FunctionCallOutputItem):
            output = _text(item.output, f"{prefix}.{i}.output")
            messages.append(ChatMessage(role="tool", content=output, extra={"tool_call_id": item.call_id}))
        elif isinstance(item, OtherItem):
            raise UnsupportedParameter(UNKNOWN_ITEM.format(kind=item.type), param=f"{prefix}.{i}.type")
    flush()
    return messages
