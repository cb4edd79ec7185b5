"""A real llmservice process (uvicorn) on a free loopback port, for end-to-end tests.

The process gets an explicit environment (a few system variables plus the settings below), never
the developer's shell or `.env`, so a test run means the same thing on every machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

# System variables a child process needs to find its interpreter, libraries and temp space.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "LD_LIBRARY_PATH", "SYSTEMROOT")
# The settings every test server starts from; a test overrides them through `env`.
BASE_SETTINGS = {
    "LOG_LEVEL": "INFO",
    "N_THREADS": "2",
    "SECRET_KEY": "tests-only-secret-key-not-for-production",
    "CACHE_REQUESTS": "deterministic",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}
HTTP_TIMEOUT = 120.0  # generous: a busy 2-core machine makes httpx's 5 s default flaky

_used_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A free loopback port never handed out before in this test session."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _ports_lock:
            if port not in _used_ports:
                _used_ports.add(port)
                return port


def explicit_env(**settings: str) -> dict[str, str]:
    """The inherited system variables plus BASE_SETTINGS plus `settings`."""
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    return {**env, **BASE_SETTINGS, **settings}


def wait_until_ok(process: subprocess.Popen, url: str, timeout: float, log: Callable[[], str]) -> None:
    """Poll `url` until it answers 200; a RuntimeError with `log()` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} in {timeout} s:\n{log()}")


def stop_process(process: subprocess.Popen | None) -> int | None:
    """Stop a child process (SIGTERM, then SIGKILL after 20 s); its exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
    return process.returncode


class LiveServer:
    """Migrates its own SQLite database, then runs `uvicorn llmservice.asgi:application`.

    Each start picks a new port, so a restart never races the old socket.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.workdir = workdir
        self.db_path = workdir / "db.sqlite3"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.env = explicit_env(**{
            "ENV_FILE": str(workdir / "no.env"),  # a developer's .env never leaks into tests
            "DATABASE_URL": f"sqlite:///{self.db_path}",  # a test's own DATABASE_URL wins (PostgreSQL)
            **(env or {}),
        })
        self.process: subprocess.Popen | None = None
        self._started_once = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "llmservice.asgi:application", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, timeout: float = 120, migrate: bool = True) -> "LiveServer":
        if self._started_once:
            self.port = free_port()
            if "INTERNAL_URL" in self.env:
                self.env["INTERNAL_URL"] = self.base_url
        self._started_once = True
        if migrate:
            self.manage("migrate", "--noinput")
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()  # a failed start never leaves its child behind
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        wait_until_ok(self.process, self.base_url + "/health", timeout, self.log)

    def stop(self) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s); its exit code."""
        return stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 60, times: int = 1) -> str:
        """The log once it contains `text` `times` times (bounded wait; the assertion is on content, not time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= times:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in server log:\n{self.log()[-3000:]}")

    def client(self, **kwargs):
        """An httpx client on this server with a generous timeout."""
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", HTTP_TIMEOUT), **kwargs)

    def internal_token(self) -> str:
        """The bearer token the server expects on /internal/: INTERNAL_TOKEN, else derived from SECRET_KEY."""
        from django.test import override_settings

        from registry.client import internal_token

        with override_settings(SECRET_KEY=self.env["SECRET_KEY"], INTERNAL_TOKEN=self.env.get("INTERNAL_TOKEN", "")):
            return internal_token()

    def internal(self, method: str, path: str, payload: dict | None = None) -> dict:
        """One call to the server's /internal/ endpoints (status, cache stats, unload, ...)."""
        with self.client(headers={"Authorization": f"Bearer {self.internal_token()}"}) as http:
            response = http.request(method, "/internal" + path, json=payload)
        response.raise_for_status()
        return response.json()

    def tier_status(self, name: str) -> dict:
        """One tier's row of GET /internal/status."""
        return next(t for t in self.internal("GET", "/status")["tiers"] if t["name"] == name)
