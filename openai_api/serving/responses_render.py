"""The one renderer of Responses API answers: the response object and its semantic stream events,
the same for a live stream, a whole answer and a cache replay.

A `ResponseResult` is the neutral answer (what the cache keeps). `ResponseWriter` turns pieces of
an answer (reasoning, text, a call's start, a call's arguments) into output items and events;
fed a whole `ResponseResult` it yields the same events a live stream does, in bigger pieces.

https://platform.openai.com/docs/api-reference/responses/object
https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from inference.params import SamplingParams
from llmservice.errors import ServiceError

from ..schemas.responses import FormatJsonObject, FormatJsonSchema, FunctionChoice, FunctionToolParam, ResponseCreateRequest


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class ResponseResult:
    """What the model answered, however it is shown. `finish_reason`: "stop" or "length"."""

    text: str | None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    reasoning: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    relaxed: list[str] = field(default_factory=list)  # schema keywords not enforced (X-Schema-Relaxed)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ResponseResult":
        return cls(**{**data, "calls": [tuple(c) for c in data.get("calls", [])]})


@dataclass(frozen=True)
class Echo:
    """The request's fields a response object repeats, with the sampling values in effect."""

    model: str
    request: ResponseCreateRequest
    sampling: SamplingParams

    def fields(self) -> dict[str, Any]:
        r = self.request
        return {
            "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens,
            "max_tool_calls": None,
            "model": self.model,
            "parallel_tool_calls": r.parallel_tool_calls is not False,
            "previous_response_id": r.previous_response_id,
            "prompt_cache_key": r.prompt_cache_key,
            "reasoning": {"effort": None, "summary": None},
            "safety_identifier": r.safety_identifier,
            "service_tier": "default",
            "store": r.stored,
            "temperature": self.sampling.temperature,
            "text": {"format": _format(r)},
            "tool_choice": _tool_choice(r),
            "tools": [_tool(t) for t in r.tools or []],
            "top_logprobs": 0,
            "top_p": self.sampling.top_p,
            "truncation": "disabled",
            "user": r.user,
            "metadata": r.metadata or {},
        }


def _format(r: ResponseCreateRequest) -> dict:
    fmt = r.text.format if r.text else None
    if isinstance(fmt, FormatJsonSchema):
        return {"type": "json_schema", "name": fmt.name, "schema": fmt.schema_, "description": fmt.description,
                "strict": bool(fmt.strict)}
    return {"type": "json_object"} if isinstance(fmt, FormatJsonObject) else {"type": "text"}


def _tool_choice(r: ResponseCreateRequest) -> Any:
    if isinstance(r.tool_choice, FunctionChoice):
        return {"type": "function", "name": r.tool_choice.name}
    return r.tool_choice or "auto"


def _tool(tool: FunctionToolParam) -> dict:
    return {"type": "function", "name": tool.name, "description": tool.description,
            "parameters": tool.parameters, "strict": tool.strict is not False}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    }


def event_bytes(event: dict) -> bytes:
    """One server-sent event, named by its type as OpenAI sends them."""
    return b"event: " + event["type"].encode() + b"\ndata: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class ResponseWriter:
    """Builds one response's output items, returning the stream events each step makes."""

    def __init__(self, ident: str, created: int, echo: Echo):
        self.ident, self.created, self.echo = ident, created, echo
        self.items: list[dict] = []
        self._open: dict | None = None  # the item being written
        self._seq = 0
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[list[str]] = []
        self._status = "completed"  # what a message item closed now ends as
        self.final: dict | None = None

    # --- the response object ---
    def response(self, status: str, result: ResponseResult | None = None) -> dict:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.ident,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": incomplete,
            **self.echo.fields(),
            "output": list(self.items),
            "usage": usage(result.prompt_tokens, result.completion_tokens) if result else None,
        }

    def _event(self, kind: str, **fields: Any) -> dict:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def start(self) -> list[dict]:
        shell = self.response("in_progress")
        return [self._event("response.created", response=shell), self._event("response.in_progress", response=shell)]

    # --- pieces of the answer ---
    def reasoning_delta(self, delta: str) -> list[dict]:
        events = self._ensure("reasoning")
        self.reasoning.append(delta)
        if delta:
            events.append(self._event("response.reasoning_text.delta", **self._where(), content_index=0, delta=delta))
        return events

    def text_delta(self, delta: str) -> list[dict]:
        events = self._ensure("message")
        self.text.append(delta)
        if delta:
            events.append(self._event("response.output_text.delta", **self._where(), content_index=0, delta=delta, logprobs=[]))
        return events

    def call_start(self, name: str) -> list[dict]:
        events = self._close()
        self.calls.append([name, ""])
        item = {"id": new_item_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": name}
        return events + self._add(item)

    def call_arguments(self, delta: str) -> list[dict]:
        if not delta or self._open is None or self._open["type"] != "function_call":
            return []
        self.calls[-1][1] += delta
        return [self._event("response.function_call_arguments.delta", **self._where(), delta=delta)]

    def finish(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> tuple[list[dict], ResponseResult, dict]:
        """Close the answer: its last events, its neutral result and the final response object."""
        events = [] if self.items else self._ensure("message")  # an empty answer is an empty message
        self._status = "incomplete" if finish_reason == "length" else "completed"
        events += self._close()
        result = ResponseResult(
            text="".join(self.text) if self.text else None,
            calls=[(name, arguments) for name, arguments in self.calls],
            reasoning="".join(self.reasoning) if self.reasoning else None,
            finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        )
        self.final = self.response(self._status, result)
        events.append(self._event(f"response.{self._status}", response=self.final))
        return events, result, self.final

    def replay(self, result: ResponseResult) -> Iterator[dict]:
        """Every event of a whole answer, as a live stream of it sends them."""
        yield from self.start()
        if result.reasoning is not None:
            yield from self.reasoning_delta(result.reasoning)
        if result.text is not None and (result.text or not result.calls):
            yield from self.text_delta(result.text)
        for name, arguments in result.calls:
            yield from self.call_start(name)
            yield from self.call_arguments(arguments)
        events, _, _ = self.finish(result.finish_reason, result.prompt_tokens, result.completion_tokens)
        yield from events

    def whole(self, result: ResponseResult) -> dict:
        """The response object of a whole answer (the same items the stream would build)."""
        for _ in self.replay(result):
            pass
        return self.final

    def error(self, exc: ServiceError) -> dict:
        """An error after the stream has started: the status is already sent, so it goes in-band."""
        return self._event("error", code=exc.code, message=exc.message, param=exc.param)

    # --- items ---
    def _where(self) -> dict:
        return {"item_id": self._open["id"], "output_index": len(self.items) - 1}

    def _ensure(self, kind: str) -> list[dict]:
        if self._open is not None and self._open["type"] == kind:
            return []
        events = self._close()
        if kind == "message":
            item = {"id": new_item_id("msg"), "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        else:
            item = {"id": new_item_id("rs"), "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        events += self._add(item)
        events.append(self._event("response.content_part.added", **self._where(), content_index=0, part=part))
        return events

    def _add(self, item: dict) -> list[dict]:
        self.items.append(item)
        self._open = item
        return [self._event("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))]

    def _close(self) -> list[dict]:
        item = self._open
        if item is None:
            return []
        where, events = self._where(), []
        if item["type"] == "function_call":
            item["arguments"] = self.calls[-1][1]
            events.append(self._event("response.function_call_arguments.done", **where, name=item["name"],
                                      arguments=item["arguments"]))
        elif item["type"] == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(self.text)}
            item["content"] = [part]
            events.append(self._event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]))
            events.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        else:
            part = {"type": "reasoning_text", "text": "".join(self.reasoning)}
            item["content"] = [part]
            events.append(self._event("response.reasoning_text.done", **where, content_index=0, text=part["text"]))
            events.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        item["status"] = "completed" if item["type"] != "message" or self._status == "completed" else "incomplete"
        self._open = None
        events.append(self._event("response.output_item.done", output_index=where["output_index"], item=dict(item)))
        return events
