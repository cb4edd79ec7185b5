"""Calls to a test server that prove their answer was generated, not replayed from the cache."""

from __future__ import annotations

from typing import Any

# SmolLM2's end-of-generation tokens, banned with OpenAI's logit_bias: a request runs to max_tokens.
EOG_BAN = {"0": -100, "2": -100, "4": -100}


def live(resource: Any, **kwargs: Any) -> Any:
    """`resource.create(**kwargs)` (e.g. `client.chat.completions`) asserting `X-Cache: MISS`;
    a streamed answer comes back as the list of its chunks."""
    raw = resource.with_raw_response.create(**kwargs)
    assert raw.headers["x-cache"] == "MISS", "answered from the cache: this would compare a replay with itself"
    parsed = raw.parse()
    return list(parsed) if kwargs.get("stream") else parsed


def chat_text(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def completion_text(chunks: list) -> str:
    return "".join(c.choices[0].text for c in chunks if c.choices)
