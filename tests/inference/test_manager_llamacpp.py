"""The manager's promises on the real bundled SmolLM2 (llama.cpp), not a fake: one load for
concurrent first requests, admission in arrival order, a new request never interrupting a
running one, and a tier retired mid-request finishing it on the old model.

The assertions hold whether a model serves one request at a time or several at once.
"""

from __future__ import annotations

import asyncio
import logging

from inference.events import Delta, Finished, Started
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from tests.helpers import JOIN_TIMEOUT, async_wait_until

EOG_BAN = {0: -100.0, 2: -100.0, 4: -100.0}  # SmolLM2's end-of-generation tokens: run to max_tokens
GENERATION_TIMEOUT = 300  # a bound, not a speed claim: a busy 2-core machine can be very slow


def spec(path: str, **load) -> ModelSpec:
    return ModelSpec(
        name="light", backend="llamacpp", kind="chat", model_path=path, load={"n_ctx": 512, "n_threads": 2, **load}, defaults={}
    )


def request(prompt: str, max_tokens: int) -> GenerationRequest:
    sampling = resolve_sampling({"temperature": 0, "max_tokens": max_tokens, "logit_bias": EOG_BAN}, {})
    return GenerationRequest(sampling=sampling, prompt=prompt)


async def run(manager, s, r) -> tuple[str, Finished]:
    events = [e async for e in manager.generate(s, r)]
    return "".join(e.text for e in events if isinstance(e, Delta)), events[-1]


async def test_concurrent_first_requests_share_one_load(manager, smollm2_path, caplog):
    caplog.set_level(logging.INFO, logger="inference.scheduler")
    results = await asyncio.gather(*(run(manager, spec(smollm2_path), request(f"Say {i}:", 3)) for i in range(4)))
    assert [finished.completion_tokens for _, finished in results] == [3, 3, 3, 3]
    loads = [r for r in caplog.records if r.getMessage().startswith("Loaded light model")]
    assert len(loads) == 1, [r.getMessage() for r in loads]
    assert manager.status()["light"].requests == 4


async def test_requests_are_admitted_in_arrival_order_and_never_interrupt_a_running_one(manager, smollm2_path):
    s = spec(smollm2_path)
    long = request("Count: 1, 2, 3,", 32)
    alone, alone_finished = await run(manager, s, long)  # the reference: the same request with nothing else queued

    admitted: list[int] = []
    finished: dict[int, Finished] = {}
    texts: dict[int, str] = {}

    async def one(i: int, r: GenerationRequest) -> None:
        parts = []
        async for event in manager.generate(s, r):
            if isinstance(event, Started):
                admitted.append(i)
            elif isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Finished):
                finished[i] = event
        texts[i] = "".join(parts)

    # More requests than could ever run at once arrive one by one while the long one runs:
    # each is on the model's queue before the next is sent.
    base = manager.status()["light"].requests
    tasks = [asyncio.create_task(one(0, long))]
    await async_wait_until(lambda: admitted == [0], "the long request to start")
    for i in range(1, 7):
        tasks.append(asyncio.create_task(one(i, request(f"Request {i}:", 2))))
        await async_wait_until(
            lambda: manager.status()["light"].in_flight + manager.status()["light"].requests - base >= i + 1,
            f"request {i} to be queued",
        )
    await asyncio.wait_for(asyncio.gather(*tasks), GENERATION_TIMEOUT)

    assert admitted == list(range(7))  # first come, first admitted
    assert finished[0] == alone_finished and finished[0].reason == "length" and finished[0].completion_tokens == 32
    assert texts[0] == alone  # nothing cut into the running generation or changed it
    assert all(finished[i].completion_tokens == 2 and texts[i] for i in range(1, 7))


async def test_a_tier_retired_mid_request_finishes_it_on_the_old_model_and_the_next_uses_the_new(manager, smollm2_path):
    old, new = spec(smollm2_path, n_ctx=256), spec(smollm2_path, n_ctx=1024)
    in_flight = request("Count: 1, 2, 3,", 40)
    alone, _ = await run(manager, old, in_flight)
    old_worker = manager.scheduler(old)

    stream = manager.generate(old, in_flight)
    events = [await anext(stream)]
    while not isinstance(events[-1], Delta):
        events.append(await anext(stream))
    # The tier's load parameters change (as an admin edit does): the next request retires the old instance.
    long_prompt = "hello " * 400  # about 400 tokens: too long for n_ctx 256, fine for 1024
    _, finished = await run(manager, new, request(long_prompt, 2))
    assert finished.reason == "length" and finished.prompt_tokens > 256  # only the new instance can take it
    assert manager.status()["light"].state == "ready"

    events += [e async for e in stream]
    assert events[-1].reason == "length" and events[-1].completion_tokens == 40
    assert "".join(e.text for e in events if isinstance(e, Delta)) == alone  # finished, unchanged, on the old model
    assert old_worker.join(JOIN_TIMEOUT), "the retired model was never unloaded"
    assert old_worker.status().state == "unloaded"
