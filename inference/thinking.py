"""Reasoning models' thinking, as their chat templates mark it: the tags, and the on/off switch.

Qwen3's template writes `<think>`/`</think>` and takes `enable_thinking`; DeepSeek-R1 distills'
templates open `<think>` at the end of the prompt. Serving splits the thinking out of the answer
(`openai_api/serving/reasoning.py`); `reasoning_effort` sets the switch where a template has one.
"""

from __future__ import annotations

from .events import Thinking

THINK_TAGS = ("<think>", "</think>")
SWITCHES = ("enable_thinking",)  # template variables that turn thinking on or off
NO_SWITCH = "'reasoning_effort' is not supported by this model: its chat template has no thinking switch."


def thinking_tags(template: str | None) -> tuple[str, str] | None:
    """The thinking tags a chat template writes, or None when it knows none."""
    if template and all(tag in template for tag in THINK_TAGS):
        return THINK_TAGS
    return None


def thinking_switch(template: str | None) -> str | None:
    """The template variable that turns thinking on or off, or None when it has none."""
    return next((s for s in SWITCHES if template and s in template), None)


def thinking_state(tags: tuple[str, str] | None, prompt: str) -> Thinking | None:
    """What serving needs to split this answer: the tags, and whether the prompt left a block open."""
    if tags is None:
        return None
    opened, closed = prompt.rfind(tags[0]), prompt.rfind(tags[1])
    return Thinking(open=tags[0], close=tags[1], inside=opened > closed)
