"""Response objects and stream chunks of chat and completions, fields in the spec's order.

Serialized with `exclude_unset`: a field is sent when the renderer set it (even to null), so a
chunk's delta carries only what changed while `logprobs: null` and `finish_reason: null` are
always there, as OpenAI sends them.

https://platform.openai.com/docs/api-reference/chat/object
https://platform.openai.com/docs/api-reference/chat-streaming/streaming
https://platform.openai.com/docs/api-reference/completions/object
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


# --- chat: logprobs, messages, tool calls ------------------------------------------------------
class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprobObject(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobObject] | None
    refusal: list[TokenLogprobObject] | None = None


class FunctionCallObject(BaseModel):
    name: str
    arguments: str


class ToolCallObject(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCallObject


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCallObject] | None = Field(None, description="Only when the model called tools.")
    # --- llmservice extension (as vLLM, llama-server and DeepSeek's API) ---
    reasoning_content: str | None = Field(None, description="Extension: a reasoning model's thinking, split out.")


class ChatCompletionChoice(BaseModel):
    index: int
    message: ChatCompletionMessage
    logprobs: ChatLogprobs | None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "cancelled"]


class ChatCompletion(BaseModel):
    """https://platform.openai.com/docs/api-reference/chat/object"""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class ChunkFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ChunkToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChunkFunction


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None
    # --- llmservice extension ---
    reasoning_content: str | None = Field(None, description="Extension: a piece of the model's thinking.")


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter", "cancelled"] | None


class ChatCompletionChunk(BaseModel):
    """https://platform.openai.com/docs/api-reference/chat-streaming/streaming"""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(None, description="Null on every chunk but the last when include_usage is on.")


# --- completions -------------------------------------------------------------------------------
class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length", "cancelled"] | None


class Completion(BaseModel):
    """https://platform.openai.com/docs/api-reference/completions/object (a stream's chunks
    are this object too, with `finish_reason` null until a choice ends)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


def to_json(obj: BaseModel) -> bytes:
    """The object as sent: only the fields the renderer set."""
    return obj.__pydantic_serializer__.to_json(obj, exclude_unset=True)


# --- embeddings and rerank (documented here; built as plain JSON on their hot path) --------------
class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingObject(BaseModel):
    """https://platform.openai.com/docs/api-reference/embeddings/object"""

    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 little-endian float32 (encoding_format).")
    # --- llmservice extensions (BGE-M3 tiers, on request) ---
    sparse_embedding: dict[str, float] | None = Field(None, description="Extension: token -> weight.")
    colbert_embedding: list[list[float]] | None = Field(None, description="Extension: one vector per token.")


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage


class RerankDocumentText(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocumentText | None = Field(None, description="Only with return_documents.")


class RerankResponse(BaseModel):
    """https://docs.cohere.com/reference/rerank"""

    id: str
    model: str
    results: list[RerankResult]
    usage: EmbeddingUsage
