"""The installed llama.cpp is the one the Makefile builds: its CPU backend loads no OpenMP runtime.

torch (the embedding and rerank tiers) brings libgomp, and llama.cpp built with OpenMP would share
that one runtime in our process: once an embedding tier had run, LLM decode slowed by a sixth to a
third (more threads than CPUs make libgomp's idle workers sleep almost at once). The Makefile
builds llama-cpp-python with -DGGML_OPENMP=OFF; pip's own cached wheel is an OpenMP build, so a
setup that fell back to it would pass every other test and quietly lose that speed.
"""
import json
import subprocess
import sys

import pytest

# A fresh interpreter: this test process may already have loaded torch (and its libgomp).
PROBE = """
import json
import llama_cpp
llama_cpp.llama_backend_init()
maps = open("/proc/self/maps").read()
print(json.dumps(sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line or "libggml-cpu" in line})))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_llama_cpp_cpu_backend_loads_no_openmp_runtime():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    libraries = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("libggml-cpu" in path for path in libraries), libraries  # the probe saw the backend load
    assert not [path for path in libraries if "libgomp" in path], (
        f"llama.cpp's CPU backend loaded an OpenMP runtime ({libraries}); set up with `make install`, "
        "which builds llama-cpp-python with -DGGML_OPENMP=OFF"
    )
