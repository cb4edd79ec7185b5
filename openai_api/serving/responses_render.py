"""The one renderer of Responses API answers: the response object and its semantic stream events,
the same for a live stream, a whole answer and a cache replay.

`ResponseWriter` turns a run's outputs (serving/choices.py: reasoning, text, a call's start, a
call's arguments) into output items and events; fed a whole `GenerationResult` (a non-streamed
answer, a cache hit) it yields the same events a live stream does, in bigger pieces.

https://platform.openai.com/docs/api-reference/responses/object
https://platform.openai.com/docs/api-reference/responses-streaming
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from inference.params import SamplingParams
from llmservice.errors import ServiceError

from ..schemas.responses import FormatJsonObject, FormatJsonSchema, FunctionChoice, FunctionToolParam, ResponseCreateRequest
from .choices import ArgumentsOut, CallOpened, Output, ReasoningOut, TextOut, replay_outputs
from .results import GenerationResult


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


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
    def response(self, status: str, result: GenerationResult | None = None) -> dict:
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
    def output(self, out: Output) -> list[dict]:
        """The events one output of the run makes (a response has one choice)."""
        if isinstance(out, TextOut):
            return self.text_delta(out.text)
        if isinstance(out, ReasoningOut):
            return self.reasoning_delta(out.text)
        if isinstance(out, CallOpened):
            return self.call_start(out.name, out.id)
        if isinstance(out, ArgumentsOut):
            return self.call_arguments(out.text)
        return []  # a choice's opening and closing: the items say it

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

    def call_start(self, name: str, call_id: str) -> list[dict]:
        events = self._close()
        self.calls.append([name, ""])
        item = {"id": new_item_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                "call_id": call_id, "name": name}
        return events + self._add(item)

    def call_arguments(self, delta: str) -> list[dict]:
        if not delta or self._open is None or self._open["type"] != "function_call":
            return []
        self.calls[-1][1] += delta
        return [self._event("response.function_call_arguments.delta", **self._where(), delta=delta)]

    def finish(self, result: GenerationResult) -> list[dict]:
        """Close the answer (its one choice): its last events; `final` is then the response object."""
        events = [] if self.items else self._ensure("message")  # an empty answer is an empty message
        finish_reason = result.choices[0].finish_reason if result.choices else "length"
        self._status = "incomplete" if finish_reason == "length" else "completed"
        events += self._close()
        self.final = self.response(self._status, result)
        events.append(self._event(f"response.{self._status}", response=self.final))
        return events

    def replay(self, result: GenerationResult) -> Iterator[dict]:
        """Every event of a whole answer, as a live stream of it sends them."""
        yield from self.start()
        for out in replay_outputs(result):
            yield from self.output(out)
        yield from self.finish(result)

    def whole(self, result: GenerationResult) -> dict:
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
