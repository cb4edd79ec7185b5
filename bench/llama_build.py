"""llama.cpp's own `llama-server` and `llama-batched-bench`, built once from the source that
llama-cpp-python vendors, so the peer runs the very llama.cpp our engine runs.

The sdist of the installed llama-cpp-python version comes from PyPI (`pip download`); its
`vendor/llama.cpp` is built with CMake (from PyPI when the machine has none) into
`var/llama.cpp/<version>/`, and reused by every later run. About 5 minutes on 2 cores.
LLAMA_CPP_BIN_DIR points at binaries built elsewhere instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("llama-server", "llama-batched-bench")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON",
)


def cache_dir() -> Path:
    from inference.llamacpp_source import cache_dir

    return cache_dir(ROOT / "var")


def binaries() -> Path:
    """The directory holding llama-server and llama-batched-bench, building them if needed."""
    override = os.environ.get("LLAMA_CPP_BIN_DIR")
    if override:
        path = Path(override)
        missing = [t for t in TARGETS if not (path / t).exists()]
        if missing:
            raise RuntimeError(f"LLAMA_CPP_BIN_DIR={override} lacks {', '.join(missing)}")
        return path
    bin_dir = cache_dir() / "build" / "bin"
    if all((bin_dir / t).exists() for t in TARGETS):
        return bin_dir
    source = _vendored_source()
    cmake = _cmake()
    build = cache_dir() / "build"
    logger.info("building %s from %s (once; about 5 minutes on 2 cores)", ", ".join(TARGETS), source)
    log = cache_dir() / "build.log"
    with open(log, "w") as out:
        for command in ([cmake, "-S", str(source), "-B", str(build), *CMAKE_FLAGS],
                        [cmake, "--build", str(build), "-j", str(os.cpu_count() or 2), "--target", *TARGETS]):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"building llama.cpp failed; see {log}")
    return bin_dir


def env(bin_dir: Path) -> dict[str, str]:
    """The environment to run the binaries in (their shared libraries sit next to them)."""
    paths = [str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}


def _vendored_source() -> Path:
    from inference.llamacpp_source import vendored_source

    return vendored_source(ROOT / "var")


def _cmake() -> str:
    found = shutil.which("cmake")
    if found:
        return found
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "cmake"], check=True)
    return str(Path(sys.executable).parent / "cmake")
