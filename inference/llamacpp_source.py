"""llama.cpp's source as the installed llama-cpp-python vendors it, and what we make from it.

The sdist of the installed llama-cpp-python version (from PyPI, with pip, once) carries the exact
llama.cpp our engine runs, under `vendor/llama.cpp`: its `convert_hf_to_gguf.py` turns a Hugging
Face model directory into a GGUF (`manage.py build_models` makes a MiniLM embedding GGUF this way,
offline), and the benchmark builds `llama-server` from it (bench/llama_build.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_dir(base: Path) -> Path:
    """Where the sdist and what is built from it live: `<base>/llama.cpp/<version>/`."""
    return base / "llama.cpp" / version("llama-cpp-python")


def vendored_source(base: Path) -> Path:
    """`vendor/llama.cpp` of the installed llama-cpp-python's sdist, fetched and unpacked once."""
    cache = cache_dir(base)
    source = cache / "src" / "llama.cpp"
    if (source / "CMakeLists.txt").exists():
        return source
    cache.mkdir(parents=True, exist_ok=True)
    archives = list(cache.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        logger.info("downloading the llama-cpp-python %s sdist (for its vendored llama.cpp)", version("llama-cpp-python"))
        subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version('llama-cpp-python')}",
                        "--no-deps", "--no-binary", ":all:", "--quiet", "-d", str(cache)], check=True)
        archives = list(cache.glob("llama_cpp_python-*.tar.gz"))
    archive = archives[0]
    prefix = f"{archive.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            if member.name.startswith(prefix):
                member.name = "llama.cpp/" + member.name[len(prefix):]
                members.append(member)
        tar.extractall(cache / "src", members=members, filter="data")
    return source


def convert_to_gguf(model_dir: Path, out: Path, *, base: Path, outtype: str = "f16") -> Path:
    """A Hugging Face model directory as a GGUF file, with llama.cpp's own converter, offline."""
    source = vendored_source(base)
    partial = out.with_suffix(".partial")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(source / "gguf-py"), os.environ.get("PYTHONPATH", "")) if p)}
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(source / "convert_hf_to_gguf.py"), str(model_dir), "--outfile",
                           str(partial), "--outtype", outtype], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{done.stderr[-3000:]}")
    partial.replace(out)  # whole or absent: never a half-written model
    return out
