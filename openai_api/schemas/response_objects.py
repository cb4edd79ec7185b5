"""What POST /v1/responses answers: the response object and its stream events, as typed models.

They document the 200 bodies in the OpenAPI document (the writer, serving/responses_render.py,
builds the same shapes; tests validate one against the other). Fields in the spec's order.

https://platform.openai.com/docs/api-reference/responses/object
https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

ItemStatus = Literal["in_progress", "completed", "incomplete"]


# --- output items --------------------------------------------------------------------------------
class OutputTextPart(BaseModel):
    type: Literal["output_text"]
    annotations: list[Any]
    logprobs: list[Any]
    text: str


class ReasoningTextPart(BaseModel):
    type: Literal["reasoning_text"]
    text: str


ContentPart = Annotated[Union[OutputTextPart, ReasoningTextPart], Field(discriminator="type")]


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"]
    status: ItemStatus
    content: list[OutputTextPart]
    role: Literal["assistant"]


class OutputFunctionCall(BaseModel):
    id: str
    type: Literal["function_call"]
    status: ItemStatus
    arguments: str
    call_id: str
    name: str


class OutputReasoning(BaseModel):
    """The model's thinking (a tier with thinking tags), as text content; no summary is made."""

    id: str
    type: Literal["reasoning"]
    summary: list[Any]
    content: list[ReasoningTextPart]
    status: ItemStatus


OutputItem = Annotated[Union[OutputMessage, OutputFunctionCall, OutputReasoning], Field(discriminator="type")]


# --- the response object -----------------------------------------------------------------------
class InputTokensDetails(BaseModel):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class ReasoningEcho(BaseModel):
    effort: str | None
    summary: str | None


class TextEcho(BaseModel):
    format: dict[str, Any] = Field(description="{type: text}, {type: json_object}, or the json_schema format sent.")


class ResponseObject(BaseModel):
    """https://platform.openai.com/docs/api-reference/responses/object"""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "incomplete", "in_progress"]
    background: bool
    error: None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    parallel_tool_calls: bool
    previous_response_id: str | None
    prompt_cache_key: str | None
    reasoning: ReasoningEcho
    safety_identifier: str | None
    service_tier: str
    store: bool
    temperature: float | None
    text: TextEcho
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_logprobs: int
    top_p: float | None
    truncation: Literal["disabled"]
    user: str | None
    metadata: dict[str, str]
    output: list[OutputItem]
    usage: ResponseUsage | None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: bool


# --- stream events (server-sent events named by their type) ---------------------------------------
class _Event(BaseModel):
    sequence_number: int


class ResponseLifecycleEvent(_Event):
    """The response as it stands: created and in_progress (no output yet), then its end."""

    type: Literal["response.created", "response.in_progress", "response.completed", "response.incomplete"]
    response: ResponseObject


class OutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ContentPartEvent(_Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class OutputTextDeltaEvent(_Event):
    type: Literal["response.output_text.delta"]
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any]


class OutputTextDoneEvent(_Event):
    type: Literal["response.output_text.done"]
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any]


class ReasoningTextDeltaEvent(_Event):
    type: Literal["response.reasoning_text.delta"]
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ReasoningTextDoneEvent(_Event):
    type: Literal["response.reasoning_text.done"]
    item_id: str
    output_index: int
    content_index: int
    text: str


class FunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"]
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDoneEvent(_Event):
    type: Literal["response.function_call_arguments.done"]
    item_id: str
    output_index: int
    name: str
    arguments: str


class ErrorEvent(_Event):
    """An error after the stream started (the status was already sent)."""

    type: Literal["error"]
    code: str | None
    message: str
    param: str | None


# Every event of a Responses stream (`event: <type>` then `data: <the event's JSON>`).
STREAM_EVENTS: tuple[type[_Event], ...] = (
    ResponseLifecycleEvent, OutputItemEvent, ContentPartEvent, OutputTextDeltaEvent, OutputTextDoneEvent,
    ReasoningTextDeltaEvent, ReasoningTextDoneEvent, FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent, ErrorEvent,
)
ResponseStreamEvent = Annotated[Union[STREAM_EVENTS], Field(discriminator="type")]
