"""A minimal HTTP/1.1 client for measuring our own per-request cost: one keep-alive connection,
a JSON POST, the body read as it arrives (Content-Length or chunked), SSE `data:` lines parsed.

Why not httpx alone: on this 2-core machine httpx's own work per request (building it, anyio,
h11, `aiter_lines`) was measured at about 1 ms for a one-token completion and 2-3 ms before
the first token of a stream, as much as the server overhead section 1 measures, and it runs on
the same cores as the model. Section 1 reports both clients (bench/engine.py); this one is what
the overhead target is read against. Nothing here is used by the service.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator
from urllib.parse import urlsplit

from .clients import NO_CACHE, Outcome, StreamTally, _usage_tokens


class LeanConnection:
    """One keep-alive HTTP/1.1 connection to `base_url` (http only); reconnects when the server closes."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def post(self, path: str, payload: dict, headers: dict | None = None) -> tuple[int, dict[str, str], AsyncIterator[bytes]]:
        """Send a JSON POST; return its status, its header fields (lower-cased names) and an iterator
        over the body's bytes as they arrive (consume it before the next request)."""
        body = json.dumps(payload).encode()
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}", "content-type: application/json",
                 f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        reused = self._writer is not None
        try:
            head = await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
            await self.close()  # the server closed the idle connection (keep-alive timeout): once more, on a new one
            head = await self._exchange(request)
        status = int(head[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if fields.get("connection", "").lower() == "close":
            return status, fields, self._then_close(self._body(fields))
        return status, fields, self._body(fields)

    async def _exchange(self, request: bytes) -> list[str]:
        """Send `request`; return the response's head lines."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        return (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")

    async def _then_close(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for piece in body:
            yield piece
        await self.close()

    async def _body(self, fields: dict[str, str]) -> AsyncIterator[bytes]:
        reader = self._reader
        assert reader is not None
        if "content-length" in fields:
            yield await reader.readexactly(int(fields["content-length"]))
            return
        if fields.get("transfer-encoding", "").lower() != "chunked":
            yield await reader.read()  # delimited by the connection's end
            await self.close()
            return
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                    pass
                return
            piece = await reader.readexactly(size + 2)
            yield piece[:-2]


async def lean_chat(conn: LeanConnection, payload: dict, headers: dict | None = None,
                    path: str = "/v1/chat/completions") -> Outcome:
    """`bench.clients.chat` on a LeanConnection: the same Outcome, from the same fields."""
    headers = headers if headers is not None else NO_CACHE
    started = time.perf_counter()
    status, fields, body = await conn.post(path, payload, headers)
    cache = fields.get("x-cache")
    if not payload.get("stream") or status != 200:
        data = b"".join([piece async for piece in body])
        seconds = time.perf_counter() - started
        if status != 200:
            return Outcome(seconds, None, 0, False, None, cache, status)
        result = json.loads(data)
        finish = result["choices"][0]["finish_reason"]
        return Outcome(seconds, None, _usage_tokens(result) or 0, finish is not None, finish, cache)
    tally, pending = StreamTally(started), b""
    async for piece in body:  # read to the end (the chunked body ends right after [DONE])
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            tally.line(line)
    return tally.outcome(cache)


async def lean_post(conn: LeanConnection, path: str, payload: dict) -> int:
    """POST and read the whole body; return the status."""
    status, _, body = await conn.post(path, payload)
    async for _ in body:
        pass
    return status
