"""Cost of enforcing structure: decode speed with and without a grammar, in the same run.

    .venv/bin/python bench/structured_output.py [--tokens 100] [--rounds 3]

Prints tokens/second unconstrained, with json_object and with a JSON schema (the bundled
SmolLM2, llama.cpp, 2 threads), and each constrained speed as a ratio of the unconstrained one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")

import django  # noqa: E402

django.setup()

from inference.backends.llamacpp import LlamaCppBackend  # noqa: E402
from inference.bundled import smollm2_gguf  # noqa: E402
from inference.events import Finished  # noqa: E402
from inference.grammar import schema_check  # noqa: E402
from inference.params import ChatMessage, GenerationRequest, JsonOutput, ModelSpec, SamplingParams  # noqa: E402

SCHEMA = {"type": "object", "properties": {"facts": {"type": "array", "items": {"type": "string"}}}, "required": ["facts"]}
CASES = {"unconstrained": None, "json_object": JsonOutput(None), "json_schema": JsonOutput(schema_check(schema=SCHEMA, param="bench"))}
MESSAGES = (ChatMessage(role="user", content="List facts about Paris in JSON."),)


def speed(backend, constraint, tokens: int) -> float:
    # Sampled with a fixed seed; a case that ends before max_tokens is still measured per token.
    sampling = SamplingParams(temperature=1.0, seed=1, max_tokens=tokens)
    started = time.perf_counter()
    count = 0
    for event in backend.generate(GenerationRequest(sampling=sampling, messages=MESSAGES, constraint=constraint), lambda: False):
        if isinstance(event, Finished):
            count = event.completion_tokens
    return count / (time.perf_counter() - started)


def main(tokens: int, rounds: int) -> None:
    spec = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=smollm2_gguf(), load={"n_threads": 2}, defaults={})
    backend = LlamaCppBackend.load(spec)
    best = {name: 0.0 for name in CASES}
    for _ in range(rounds):  # interleaved, so machine noise hits every case alike
        for name, constraint in CASES.items():
            best[name] = max(best[name], speed(backend, constraint, tokens))
    backend.close()
    base = best["unconstrained"]
    for name, value in best.items():
        print(f"{name:14s} {value:6.1f} tokens/s  ratio {value / base:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.tokens, args.rounds)
