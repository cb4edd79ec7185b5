"""The batched llama.cpp engine under the real scheduler, through the manager's generate path (its
prepare step compiles constraints), on the real bundled SmolLM2 GGUF.

The engine-level tests (test_llamacpp_batched.py) drive admit/step/abort by hand to place a join
or a cancel at an exact step; these check what the scheduler adds: concurrent requests really
share steps, a cancelled stream is aborted with its cells freed, a full engine queues, and the
tier's status shows the engine's sequences and KV cells.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import jsonschema

from inference.admission import gate_for
from inference.constraints import JsonSchema
from inference.events import Delta, Finished, Started
from inference.params import ModelSpec
from tests.helpers import async_wait_until
from tests.inference.engine_driver import chat, completion

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PROMPTS = ["Write a short poem about the sea.", "What is 2+2?", "Tell me about cats.", "Name three colors.",
           "Describe Paris.", "Why is the sky blue?", "Give me a recipe for pancakes."]


def spec(path: str, parallel: int = 8) -> ModelSpec:
    return ModelSpec(name="batched", backend="llamacpp", kind="chat", model_path=path,
                     load={"n_ctx": 512, "n_threads": 2, "parallel": parallel}, defaults={})


async def answer(manager, s, request) -> tuple[str, Finished]:
    events = [e async for e in manager.generate(s, request)]
    return "".join(e.text for e in events if isinstance(e, Delta)), events[-1]


def counters(manager, s) -> dict:
    return dict(manager.scheduler(s).engine.stats().counters)


async def test_eight_concurrent_requests_share_steps_and_answer_as_each_alone(manager, smollm2_path):
    """Different lengths, stop strings and a json_schema: each answer is its solo answer."""
    s = spec(smollm2_path)
    requests = [chat(p, max_tokens=6 + 3 * i, stop=["\n\n"] if i % 2 else []) for i, p in enumerate(PROMPTS)]
    schema = JsonSchema(PERSON, strict=True, param="response_format")
    requests.append(dataclasses.replace(chat("Describe a person.", max_tokens=60), constraint=schema))
    before = counters(manager, s) if manager.status().get("batched") else None
    alone = [await answer(manager, s, r) for r in requests]
    solo_steps = counters(manager, s)["steps"] - (before or {"steps": 0})["steps"]
    start = counters(manager, s)["steps"]
    together = await asyncio.gather(*(answer(manager, s, r) for r in requests))
    assert together == alone
    jsonschema.validate(json.loads(together[-1][0]), PERSON)
    assert counters(manager, s)["steps"] - start < solo_steps / 2  # they really ran together
    assert len({f.completion_tokens for _, f in together}) > 1


async def test_cancelling_one_of_four_streams_frees_its_sequence_and_the_others_finish(manager, smollm2_path):
    s = spec(smollm2_path, parallel=4)
    requests = [chat(p, max_tokens=40, logit_bias={0: -100.0, 2: -100.0, 4: -100.0}) for p in PROMPTS[:4]]
    expected = [await answer(manager, s, r) for r in requests]
    streams = [manager.generate(s, r) for r in requests]
    assert all([isinstance(await anext(stream), Started) for stream in streams])
    assert isinstance(await anext(streams[1]), Delta)  # it is generating
    await streams[1].aclose()  # the client leaves
    await async_wait_until(lambda: manager.status()["batched"].engine.active <= 3, "the cancelled sequence to be freed")
    rest = await asyncio.gather(*(answer_from(stream) for i, stream in enumerate(streams) if i != 1))
    assert rest == [expected[i] for i in (0, 2, 3)]
    status = manager.status()["batched"]
    assert status.engine.active == 0 and status.engine.kv_cells_used == 0 and status.running == 0


async def answer_from(stream) -> tuple[str, Finished]:
    events = [e async for e in stream]
    return "".join(e.text for e in events if isinstance(e, Delta)), events[-1]


async def test_a_full_engine_queues_requests_which_then_answer_as_alone(manager, smollm2_path):
    s = spec(smollm2_path, parallel=2)
    requests = [chat(p, max_tokens=10) for p in PROMPTS[:5]] + [chat(PROMPTS[0], max_tokens=10, n=3)]
    expected = [await answer(manager, s, r) for r in requests[:5]]
    assert gate_for("batched").capacity == 2  # the admission gate knows two can start at once
    most = []

    async def watch():
        while True:
            status = manager.status()["batched"]
            most.append((status.engine.active if status.engine else 0, status.queued))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(collect(manager, s, r) for r in requests))
    finally:
        watcher.cancel()
    assert [text(events) for events in results[:5]] == [t for t, _ in expected]
    assert [text(results[5], i) for i in range(3)] == [expected[0][0]] * 3  # n=3 takes turns in the two sequences
    assert max(active for active, _ in most) <= 2  # never more sequences than `parallel`


async def collect(manager, s, request) -> list:
    return [e async for e in manager.generate(s, request)]


def text(events, index: int = 0) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta) and e.index == index)


async def test_n_choices_share_one_prefill_and_status_shows_the_kv_cells(manager, smollm2_path):
    s = spec(smollm2_path, parallel=4)
    await answer(manager, s, completion("warm", max_tokens=1))
    before = counters(manager, s)
    events = await collect(manager, s, completion("Zebras in the snow, a story: once", max_tokens=10, n=4))
    after = counters(manager, s)
    prompt_tokens = next(e for e in events if isinstance(e, Started)).prompt_tokens
    assert after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"] == prompt_tokens
    assert after["prompt_tokens_shared"] - before["prompt_tokens_shared"] == 3 * prompt_tokens
    assert len({text(events, i) for i in range(4)}) == 1
    status = manager.status()["batched"].as_dict()
    assert status["slots"] == 4 and status["kv_cells_total"] == 4 * 512 and status["kv_cells_used"] == 0
    assert status["engine_counters"]["kv_cells_cached"] >= prompt_tokens  # the free sequences keep their prompts
