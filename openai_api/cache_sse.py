"""Between a stored response object and SSE: replay one as chunks, reassemble chunks into one.

https://platform.openai.com/docs/api-reference/chat-streaming
https://platform.openai.com/docs/api-reference/completions/object
"""

from __future__ import annotations

import json
from typing import AsyncIterator

DONE = b"data: [DONE]\n\n"


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_events(chunk: bytes) -> list[dict | None]:
    """The JSON payloads of the `data:` events in `chunk`; None stands for `[DONE]`."""
    events: list[dict | None] = []
    for block in chunk.split(b"\n\n"):
        for line in block.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            events.append(None if data == b"[DONE]" else json.loads(data))
    return events


def strip_usage(chunk: bytes) -> bytes:
    """`chunk` as a client that did not ask for `include_usage` sees it (no usage field or chunk)."""
    out = []
    for event in sse_events(chunk):
        if event is None:
            out.append(DONE)
            continue
        if "error" not in event:
            if not event.get("choices") and event.get("usage"):
                continue  # the final usage-only chunk
            event.pop("usage", None)
        out.append(_sse(event))
    return b"".join(out)


class StreamAssembler:
    """Folds chat or completion chunks into the non-streaming response object."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.head: dict | None = None
        self.usage: dict | None = None
        self.choices: dict[int, dict] = {}

    def feed(self, event: dict) -> None:
        if self.head is None:
            self.head = {k: event[k] for k in ("id", "created", "model", "system_fingerprint") if k in event}
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            state = self.choices.setdefault(
                choice["index"], {"parts": [], "tool_calls": {}, "logprobs": None, "finish_reason": None}
            )
            if self.endpoint == "chat":
                self._feed_chat(state, choice)
            else:
                state["parts"].append(choice.get("text") or "")
                lp = choice.get("logprobs")
                if lp:
                    merged = state["logprobs"] or {k: [] for k in lp}
                    for k, v in lp.items():
                        merged.setdefault(k, []).extend(v or [])
                    state["logprobs"] = merged
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]

    @staticmethod
    def _feed_chat(state: dict, choice: dict) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            state["parts"].append(delta["content"])
        for call in delta.get("tool_calls") or []:
            merged = state["tool_calls"].setdefault(
                call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if call.get("id"):
                merged["id"] = call["id"]
            function = call.get("function") or {}
            merged["function"]["name"] += function.get("name") or ""
            merged["function"]["arguments"] += function.get("arguments") or ""
        lp = choice.get("logprobs")
        if lp and lp.get("content"):
            state["logprobs"] = state["logprobs"] or {"content": [], "refusal": None}
            state["logprobs"]["content"].extend(lp["content"])

    def result(self) -> dict:
        head = self.head or {}
        obj = "chat.completion" if self.endpoint == "chat" else "text_completion"
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            text = "".join(state["parts"])
            if self.endpoint == "chat":
                message: dict = {"role": "assistant", "content": text or (None if state["tool_calls"] else ""),
                                 "refusal": None}
                if state["tool_calls"]:
                    message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
                choices.append({"index": index, "message": message, "logprobs": state["logprobs"],
                                "finish_reason": state["finish_reason"]})
            else:
                choices.append({"index": index, "text": text, "logprobs": state["logprobs"],
                                "finish_reason": state["finish_reason"]})
        return {**head, "object": obj, "choices": choices, "usage": self.usage}


async def replay_sse(response: dict, *, endpoint: str, include_usage: bool) -> AsyncIterator[bytes]:
    """A stored response object as the SSE stream the same request would have produced."""
    base = {k: response[k] for k in ("id", "created", "model", "system_fingerprint") if k in response}
    base["object"] = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
    if include_usage:
        base["usage"] = None

    def chunk(choice: dict) -> bytes:
        return _sse({**base, "choices": [choice]})

    for choice in response.get("choices", []):
        index, logprobs = choice["index"], choice.get("logprobs")
        if endpoint == "chat":
            message = choice.get("message") or {}
            yield chunk({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                         "finish_reason": None})
            if message.get("content"):
                yield chunk({"index": index, "delta": {"content": message["content"]}, "logprobs": logprobs,
                             "finish_reason": None})
            if message.get("tool_calls"):
                calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
                yield chunk({"index": index, "delta": {"tool_calls": calls}, "logprobs": None, "finish_reason": None})
            yield chunk({"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")})
        else:
            yield chunk({"index": index, "text": choice.get("text", ""), "logprobs": logprobs, "finish_reason": None})
            yield chunk({"index": index, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason")})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": response.get("usage")})
    yield DONE
