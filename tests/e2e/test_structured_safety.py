"""Schemas that crashed, flooded or hung the old GBNF path: each gets its 400 or a bounded, valid
answer, the server stays up, its memory stays flat, and the next request is served.

How fast each answer comes is measured by `bench` and reported, not asserted here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

RSS_GROWTH_LIMIT_MB = 150  # across all the cases together, after a warm-up request
MAX_TOKENS = 24


def nested(depth: int) -> dict:
    schema: dict = {"type": "string", "maxLength": 5}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


# name -> (schema, expected status)
CASES = {
    "maxLength 20000": ({"type": "string", "maxLength": 20000}, 200),
    "pattern ^a{1,20000}$": ({"type": "string", "pattern": "^a{1,20000}$"}, 200),
    "maxLength 1e9": ({"type": "string", "maxLength": 1000000000}, 200),
    "$ref cycle": ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, 400),
    "nesting 200 deep": (nested(200), 400),
    "nesting 5000 deep": (nested(5000), 400),
    "1 MB schema": ({"type": "object", "properties": {f"p{i}": {"type": "string", "maxLength": 10, "description": "x" * 90}
                                                     for i in range(10000)}}, 400),
    "minItems 1e6": ({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1000000}, 200),
    "pattern (a+)+$": ({"type": "string", "pattern": "^(a+)+$"}, 200),
}


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def ask(server, schema: dict, timeout: float = 300) -> httpx.Response:
    body = {
        "model": "light", "temperature": 0, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "Go."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    # Sent as bytes: a 5000-deep schema is more than Python's own json encoder will nest.
    content = json.dumps(body) if _depth(schema) < 500 else _deep_body(body, schema)
    return httpx.post(server.base_url + "/v1/chat/completions", content=content,
                      headers={"Content-Type": "application/json"}, timeout=timeout)


def _depth(schema: dict) -> int:
    depth = 0
    while isinstance(schema, dict) and "a" in schema.get("properties", {}):
        schema, depth = schema["properties"]["a"], depth + 1
    return depth


def _deep_body(body: dict, schema: dict) -> str:
    depth = _depth(schema)
    text = '{"type":"object","properties":{"a":' * depth + '{"type":"string","maxLength":5}' + ',"required":["a"]}}' * depth
    return json.dumps({**body, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "@"}}}).replace('"@"', text)


def test_pathological_schemas_are_refused_or_bounded_and_the_server_stays_well(llm_server):
    pid = llm_server.process.pid
    warm = ask(llm_server, {"type": "string", "maxLength": 5})
    assert warm.status_code == 200
    before = rss_mb(pid)
    for name, (schema, status) in CASES.items():
        response = ask(llm_server, schema)
        assert response.status_code == status, (name, response.text[:500])
        if status == 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error", name
        else:
            choice = response.json()["choices"][0]
            assert choice["finish_reason"] in ("stop", "length"), name
            if choice["finish_reason"] == "stop":
                json.loads(choice["message"]["content"])
        assert httpx.get(llm_server.base_url + "/health", timeout=30).status_code == 200, name
        growth = rss_mb(pid) - before
        assert growth < RSS_GROWTH_LIMIT_MB, f"{name}: the server grew by {growth:.0f} MB"
        assert ask(llm_server, {"type": "integer", "minimum": 1, "maximum": 9}).status_code == 200, name
