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


def shape(events: list[dict | None]) -> list:
    """The chunk sequence's shape, chunk boundaries of one choice's text collapsed: per event, its
    keys and, per choice, the delta's keys (consecutive events of the same shape counted once)."""
    shapes: list = []
    for event in events:
        if event is None:
            item: object = "[DONE]"
        else:
            item = (
                tuple(sorted(event)),
                tuple((c["index"], tuple(sorted(c.get("delta") or {})), c.get("finish_reason")) for c in event["choices"]),
            )
        if not shapes or shapes[-1] != item:
            shapes.append(item)
    return shapes
