"""A real llmservice process (uvicorn) on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """Migrates its own SQLite database, then runs `uvicorn llmservice.asgi:application`."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.db_path = workdir / "db.sqlite3"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            "ENV_FILE": str(workdir / "no.env"),  # a developer's .env never leaks into tests
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "LOG_LEVEL": "INFO",
            "N_THREADS": "2",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=check
        )

    def start(self, timeout: float = 60) -> "LiveServer":
        self.manage("migrate", "--noinput")
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "llmservice.asgi:application", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        """The log once it contains `text` (bounded wait; the assertion is on content, not time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in server log:\n{self.log()[-3000:]}")
