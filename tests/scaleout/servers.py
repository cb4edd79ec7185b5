"""Upstreams for the remote-tier tests: llama-cpp-python's own server (a foreign upstream) and a
fake that accepts connections and never answers (a slow upstream)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

from inference.bundled import smollm2_gguf
from tests.server import ROOT, explicit_env, free_port, stop_process, wait_until_ok


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


class SilentUpstream:
    """A fake upstream: accepts connections, reads requests, never answers (a stalled server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
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
