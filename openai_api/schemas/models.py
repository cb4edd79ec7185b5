"""The model object and list, with llmservice's per-tier extension fields.

https://platform.openai.com/docs/api-reference/models/object
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    # --- llmservice extensions -----------------------------------------------------
    kind: str = Field(description="Extension: chat, embedding or rerank.")
    backend: str = Field(description="Extension: the engine serving the tier.")
    loaded: bool = Field(description="Extension: whether the model is in memory now.")
    state: str = Field(description="Extension: unloaded, loading, ready, ...")
    load_time: float | None = Field(description="Extension: seconds the last load took.")
    running: int = Field(description="Extension: requests its engine serves now.")
    queued: int = Field(description="Extension: requests waiting for a free slot.")
    slots: int | None = Field(description="Extension: how many requests the loaded engine serves at once.")
    kv_cache_usage: float | None = Field(description="Extension: share of the KV cache in use, 0..1; null without one.")
    aliases: list[str] = Field(description="Extension: other names of the tier.")
    upstream: str | None = Field(None, description="Extension: a remote tier's upstream, up or down (circuit breaker); null for local tiers.")
    model_file: str = Field(description="Extension: the model file or directory's name.")
    context_length: int | None = Field(
        description="Extension: the context window in tokens (prompt + answer) of a chat tier; null for others."
    )


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]
