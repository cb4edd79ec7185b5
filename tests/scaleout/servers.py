"""Upstreams for the remote-tier tests: llama-cpp-python's own server (a foreign upstream) and a
fake that accepts connections and never answers (a slow upstream)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from inference.bundled import smollm2_gguf
from tests.server import ROOT, LiveServer, explicit_env, free_port, stop_process, wait_until_ok


class LlamaCppServer:
    """`python -m llama_cpp.server` on the bundled SmolLM2, on a free loopback port."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.log_path = workdir / "llama_cpp_server.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120) -> "LlamaCppServer":
        command = [sys.executable, "-m", "llama_cpp.server", "--model", smollm2_gguf(), "--host", "127.0.0.1",
                   "--port", str(self.port), "--n_threads", "2", "--n_ctx", "2048", "--verbose", "false"]
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=explicit_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ok(self.process, self.base_url + "/models", timeout, self.log_path.read_text)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self.process)


class _LoopbackListener:
    """A listening socket on a free loopback port; `accepted` gets each connection, on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError


class SilentUpstream(_LoopbackListener):
    """A fake upstream: accepts connections, reads requests, never answers (a stalled server)."""

    def __init__(self) -> None:
        self.connections: list[socket.socket] = []
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.connections.append(conn)

    def drop(self) -> None:
        """Close every connection accepted so far (the front sees a broken connection)."""
        for conn in self.connections:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.drop()


def dead_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/v1"


class ScriptedUpstream(_LoopbackListener):
    """A fake upstream (named so): an HTTP/1.1 server with keep-alive that answers every POST with
    a chunked SSE stream chosen by the request's `model`, and counts the TCP connections it took:
    - "ok": three content chunks, usage, [DONE], then (50 ms later) the chunked encoding's last chunk;
    - "break": one content chunk, then the connection is closed mid-body;
    - "stall": one content chunk, then nothing for STALL_SECONDS;
    - "mute": no chunk at all for STALL_SECONDS;
    - "trickle": a content chunk every TRICKLE_SECONDS, until the client closes the connection
      (then `closed_by_client` counts it).
    Each request's target and Authorization header are recorded (`requests`): a request sent
    through a proxy names the whole URL."""

    STALL_SECONDS = 5.0
    TRICKLE_SECONDS = 0.2
    WORDS = ("Hello", " scripted", " world")

    def __init__(self) -> None:
        self.connections = 0
        self.closed_by_client = 0
        self.requests: list[tuple[str, str | None]] = []  # (request target, Authorization header)
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import json
        import time

        reader = conn.makefile("rb")
        try:
            while True:
                length, authorization = None, None
                line = reader.readline()
                if not line:
                    return
                target = line.decode("latin-1").split(" ")[1] if line.count(b" ") >= 2 else ""
                while line not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                    elif name.strip().lower() == "authorization":
                        authorization = value.strip()
                    line = reader.readline()
                self.requests.append((target, authorization))
                mode = json.loads(reader.read(length or 0)).get("model")
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

                def event(data: str) -> None:
                    payload = f"data: {data}\n\n".encode()
                    conn.sendall(b"%x\r\n%s\r\n" % (len(payload), payload))

                def delta(content: str, finish: str | None = None) -> str:
                    return json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": mode,
                                       "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})

                if mode == "mute":
                    time.sleep(self.STALL_SECONDS)
                    return
                event(delta(self.WORDS[0]))
                if mode == "trickle":
                    try:
                        while True:
                            time.sleep(self.TRICKLE_SECONDS)
                            event(delta(" more"))
                    except OSError:
                        self.closed_by_client += 1
                        return
                if mode == "break":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "stall":
                    time.sleep(self.STALL_SECONDS)
                    return
                for word in self.WORDS[1:]:
                    event(delta(word))
                event(delta("", "stop"))
                event(json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": mode, "choices": [],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}))
                event("[DONE]")
                time.sleep(0.05)  # the last chunk in a write of its own, as a server's generator ending sends it
                conn.sendall(b"0\r\n\r\n")
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def started_front(directory: Path, env: dict[str, str]) -> LiveServer:
    """A service whose tiers come from `env` (synced into its own database), started."""
    server = LiveServer(directory, env=env)
    server.manage("migrate", "--noinput")
    server.manage("sync_tiers")
    server.start(migrate=False)
    return server
