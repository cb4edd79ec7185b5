"""Loading a GGUF must not silence the rest of the process.

llama-cpp-python points file descriptors 1 and 2 at /dev/null while a model loads (verbose=False).
A model retiring on its owner thread while its replacement loaded lost its "Unloaded" line that way,
and any request logged meanwhile lost its access line. Real llama.cpp, the bundled SmolLM2.
"""

import sys
import threading
import time

import pytest

from inference.backends.llamacpp import LlamaCppBackend
from inference.engines.llamacpp_batched import BatchedLlamaEngine
from inference.params import ModelSpec


@pytest.mark.parametrize("engine", [BatchedLlamaEngine, LlamaCppBackend], ids=["batched", "serial"])
def test_another_threads_output_survives_a_model_load(engine, smollm2_path, capfd):
    spec = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=smollm2_path, load={"n_ctx": 256}, defaults={})
    loading = threading.Event()
    written = []

    def chatter():
        while not loading.is_set():  # until the load has begun
            pass
        while loading.is_set():
            line = f"tick {len(written)}"
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
            written.append(line)
            time.sleep(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    loading.set()
    try:
        model = engine.load(spec)
    finally:
        loading.clear()
        thread.join()
    model.close()
    err = capfd.readouterr().err
    assert len(written) > 10  # the load took long enough to matter
    missing = [line for line in written if line + "\n" not in err]
    assert not missing, f"{len(missing)} of {len(written)} lines written during the load were lost"
