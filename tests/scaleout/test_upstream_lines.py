"""How an upstream's body is split into SSE lines, on a fake response (named so) whose body
arrives in the pieces each case gives."""

from __future__ import annotations

import asyncio

import pytest

from llmservice.errors import UpstreamFailed
from openai_api.remote import upstream
from openai_api.remote.upstream import UpstreamResponse


class FakeContent:
    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    async def iter_any(self):
        for piece in self.pieces:
            yield piece


class FakeResponse:
    def __init__(self, pieces: list[bytes]):
        self.content = FakeContent(pieces)


def lines(pieces: list[bytes]) -> list[str]:
    async def read():
        return [line async for line in UpstreamResponse(FakeResponse(pieces)).lines()]

    return asyncio.run(read())


def test_lines_split_across_and_within_pieces():
    pieces = [b"data: {\"a\"", b": 1}\n\ndata: [DONE]\r", b"\n\r\n", b"tail"]
    assert lines(pieces) == ['data: {"a": 1}', "", "data: [DONE]", "", "tail"]


def test_utf8_split_between_pieces_is_whole():
    text = "data: héllo 🐉\n".encode()
    assert lines([text[:9], text[9:15], text[15:]]) == ["data: héllo 🐉"]


def test_a_line_over_the_limit_is_an_upstream_failure(monkeypatch):
    monkeypatch.setattr(upstream, "LINE_MAX_BYTES", 10)
    with pytest.raises(UpstreamFailed):
        lines([b"data: 0123", b"456789", b"more"])
    assert lines([b"data: 0123\n", b"ok\n"]) == ["data: 0123", "ok"]
