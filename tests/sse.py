"""Reading SSE answers in tests: the events, and chunks merged into what a client would hold."""

from __future__ import annotations

import json


def sse_events(content: bytes) -> list[dict | None]:
    """The JSON payloads of the `data:` events; None stands for `[DONE]`."""
    events: list[dict | None] = []
    for line in content.split(b"\n"):
        if line.startswith(b"data:"):
            data = line[5:].strip()
            events.append(None if data == b"[DONE]" else json.loads(data))
    return events


def merged(events: list[dict | None]) -> dict:
    """Per choice index: content/text, reasoning, tool calls and finish reason, merged from chunks."""
    choices: dict[int, dict] = {}
    for event in events:
        for c in (event or {}).get("choices") or []:
            state = choices.setdefault(c["index"], {"text": "", "reasoning": "", "calls": {}, "finish_reason": None})
            delta = c.get("delta")
            if delta is None:
                state["text"] += c.get("text") or ""
            else:
                state["text"] += delta.get("content") or ""
                state["reasoning"] += delta.get("reasoning_content") or ""
                for call in delta.get("tool_calls") or []:
                    merged_call = state["calls"].setdefault(call["index"], {"name": "", "arguments": ""})
                    merged_call["name"] += (call.get("function") or {}).get("name") or ""
                    merged_call["arguments"] += (call.get("function") or {}).get("arguments") or ""
            state["finish_reason"] = c.get("finish_reason") or state["finish_reason"]
    return choices


def skeleton(value, key: str = ""):
    """A JSON value with its leaves replaced by their type names and a list by its first item's
    skeleton: what must match between two answers whose ids, times, text and lengths differ.
    (Completions' `top_logprobs` maps tokens to logprobs: its keys are data, not fields.)"""
    if isinstance(value, dict):
        if key == "top_logprobs":
            return "token map"
        return {k: skeleton(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [skeleton(value[0], key)] if value else []
    return type(value).__name__


def shape(events: list[dict | None]) -> dict:
    """A stream's chunk sequence as skeletons, per choice index, runs of same-shaped chunks counted
    once. Chunk boundaries may differ (a live answer streams its text in many pieces, a replay in
    one), and so may the interleaving of `n > 1` choices: a batched engine decodes them side by
    side and one may finish first, while a replay renders them one after another. Within a
    choice, and for the chunks that carry no choice (usage, `[DONE]`), the order must match."""
    shapes: dict = {}
    for event in events:
        key = "[DONE]" if event is None else tuple(c["index"] for c in event.get("choices") or [])
        item = "[DONE]" if event is None else skeleton(event)
        sequence = shapes.setdefault(key, [])
        if not sequence or sequence[-1] != item:
            sequence.append(item)
    return shapes


def without_ids(obj: dict) -> dict:
    """A whole answer minus what may differ between a live answer and its replay (ids, times)."""
    data = json.loads(json.dumps(obj))
    data.pop("id", None)
    data.pop("created", None)
    for choice in data.get("choices", []):
        for call in (choice.get("message") or {}).get("tool_calls") or []:
            call.pop("id", None)
    return data
