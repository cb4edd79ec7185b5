"""Processes the benchmark starts: our server, llama-cpp-python's server. Every one is stopped."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
N_THREADS = 2  # the same for our server, the peer and the engine called directly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A server subprocess on a free loopback port, logging into `workdir`."""

    name = "server"

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{self.name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def health_path(self) -> str:
        return "/health"

    def start(self, timeout: float = 120) -> float:
        """Start the process; return seconds from spawn to the first 200 on the health path."""
        log = open(self.log_path, "a")
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command(), cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        url = self.base_url + self.health_path()
        deadline = started + timeout
        with httpx.Client(timeout=1) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy in {timeout}s:\n{self.log()[-3000:]}")

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

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class OurServer(Process):
    """`uvicorn llmservice.asgi:application` on its own SQLite database, migrated before start."""

    name = "llmservice"

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None, template_db: Path | None = None):
        super().__init__(workdir)
        self.db_path = workdir / f"db-{self.port}.sqlite3"
        self.extra_env = extra_env or {}
        if template_db:
            shutil.copyfile(template_db, self.db_path)
        else:
            self.migrate()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ENV_FILE": str(self.workdir / "no.env"),  # a developer's .env never leaks into the bench
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "LOG_LEVEL": "INFO",
            "N_THREADS": str(N_THREADS),
            **self.extra_env,
        }

    def migrate(self) -> None:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=self.env(),
                       capture_output=True, text=True, check=True)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "llmservice.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port)]


# llama-cpp-python as pip builds it by default (with OpenMP), for the peer server: what its users
# run. `make bench` installs it here (pip's own wheel cache makes that seconds after the first).
PEER_LLAMA = ROOT / "var" / "peer-llama"


class PeerServer(Process):
    """llama-cpp-python's own OpenAI server with its defaults (interrupt_requests on), on pip's
    default build of llama.cpp (PEER_LLAMA) when there is one, else on ours."""

    name = "llama_cpp.server"

    @staticmethod
    def on_pip_build() -> bool:
        return (PEER_LLAMA / "llama_cpp").is_dir()

    @classmethod
    def build(cls) -> str:
        return "pip's default build (OpenMP)" if cls.on_pip_build() else "our build (no OpenMP)"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.on_pip_build():
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PEER_LLAMA), env.get("PYTHONPATH")]))
        return env

    def __init__(self, workdir: Path, model_path: str):
        super().__init__(workdir)
        self.model_path = model_path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", self.model_path, "--host", "127.0.0.1",
                "--port", str(self.port), "--n_ctx", "2048", "--n_batch", "512", "--n_threads", str(N_THREADS),
                "--n_threads_batch", str(N_THREADS), "--verbose", "false"]

    def health_path(self) -> str:
        return "/v1/models"


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(process: Process, window: float = 0.3, max_ticks: int = 3, timeout: float = 30) -> bool:
    """Wait until `process` stops burning CPU (llama_cpp.server keeps generating for clients it
    cut off; that work must not land in the next measurement). False if it never settles."""
    if not process.process or not Path("/proc").is_dir():
        return True
    deadline = time.monotonic() + timeout
    before = cpu_ticks(process.process.pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        after = cpu_ticks(process.process.pid)
        if after - before <= max_ticks:
            return True
        before = after
    logger.warning("%s still busy after %.0fs", process.name, timeout)
    return False


class LlamaServer(Process):
    """llama.cpp's own `llama-server --parallel N` (continuous batching), built from the same source
    as our llama-cpp-python (bench/llama_build.py): same GGUF, threads, per-sequence context and
    flash attention as our tier."""

    name = "llama-server"

    def __init__(self, workdir: Path, model_path: str, bin_dir: Path, parallel: int, n_ctx: int = 2048):
        super().__init__(workdir)
        self.model_path = model_path
        self.bin_dir = bin_dir
        self.parallel = parallel
        self.n_ctx = n_ctx

    def command(self) -> list[str]:
        return [str(self.bin_dir / "llama-server"), "-m", self.model_path, "--host", "127.0.0.1",
                "--port", str(self.port), "-t", str(N_THREADS), "-tb", str(N_THREADS), "-np", str(self.parallel),
                "-c", str(self.n_ctx * self.parallel), "-fa", "on", "--no-webui"]

    def env(self) -> dict[str, str]:
        from .llama_build import env

        return env(self.bin_dir)
