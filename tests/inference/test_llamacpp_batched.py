"""The batched llama.cpp engine on the real bundled SmolLM2 GGUF, driven directly (admit/step/abort).

Answers are poor (a 135M Q4_1 model): the tests check structure and that batching changes nothing
about a request's answer.
"""

import dataclasses

import pytest

from inference.engines.llamacpp_batched import BatchedLlamaEngine
from inference.events import Finished
from inference.params import ChatMessage, ModelSpec
from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable
from tests.inference.engine_driver import RecordingJob, chat, completion, run, solo
from tests.inference.split_characters import cut_inside_a_character

PROMPTS = [
    "Write a short poem about the sea.",
    "What is 2+2?",
    "Tell me about cats.",
    "Name three colors.",
    "Describe Paris.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What is a neural network?",
]


def make_spec(path, **load):
    return ModelSpec(
        name="light", backend="llamacpp", kind="chat", model_path=path,
        load={"n_ctx": 512, "n_threads": 2, "parallel": 4, **load}, defaults={},
    )


@pytest.fixture(scope="module")
def engine():
    """Prompt reuse off: a reused prefix is computed in another split than a fresh prefill, which can
    flip a greedy near-tie, so what a test compares would depend on the tests run before it."""
    from inference.bundled import smollm2_gguf

    e = BatchedLlamaEngine.load(make_spec(smollm2_gguf(), parallel=8, prompt_reuse=False))
    yield e
    e.close()


@pytest.fixture
def reusing():
    """An engine of its own with prompt reuse on (the default), for the tests of reuse itself."""
    from inference.bundled import smollm2_gguf

    e = BatchedLlamaEngine.load(make_spec(smollm2_gguf(), parallel=2))
    yield e
    e.close()


def counters(engine):
    c = engine.stats().counters
    return {"evaluated": c["prompt_tokens_evaluated"], "reused": c["prompt_tokens_reused"], "shared": c["prompt_tokens_shared"]}


def test_eight_concurrent_requests_answer_as_each_alone(engine):
    # Different lengths and stop strings; each request's greedy answer alone, then all 8 at once.
    requests = [chat(p, max_tokens=6 + 3 * i, stop=["\n\n"] if i % 2 else []) for i, p in enumerate(PROMPTS)]
    alone = [solo(engine, r) for r in requests]
    together = [RecordingJob(r) for r in requests]
    run(engine, together)
    for a, t in zip(alone, together):
        assert t.failed is None
        assert t.text() == a.text() and t.text()
        assert t.finished() == a.finished()
    assert [t.finished().completion_tokens for t in together] != [together[0].finished().completion_tokens] * 8


def test_a_request_joining_mid_flight_answers_as_alone(engine):
    first, late = chat(PROMPTS[0], max_tokens=20), chat(PROMPTS[5], max_tokens=10)
    expected = solo(engine, first).text(), solo(engine, late).text()
    running, joining = RecordingJob(first), RecordingJob(late)

    def join(step):
        if step == 6:
            assert running.text()  # the first one is already generating
            engine.admit(joining)

    run(engine, [running], on_step=join)
    assert (running.text(), joining.text()) == expected


def test_cancelling_one_of_four_streams_leaves_the_others_intact(engine):
    requests = [chat(p, max_tokens=16) for p in PROMPTS[:4]]
    expected = [solo(engine, r).text() for r in requests]
    jobs = [RecordingJob(r) for r in requests]
    free_before = []

    def cancel(step):
        if step == 5:
            free_before.append(engine.free_slots())
            engine.abort(jobs[1])
            free_before.append(engine.free_slots())

    run(engine, jobs, on_step=cancel)
    assert free_before[1] == free_before[0] + 1  # its slot is free at once
    assert jobs[1].finished().reason == "cancelled" and jobs[1].finished().completion_tokens < 16
    assert expected[1].startswith(jobs[1].text())
    for i in (0, 2, 3):
        assert jobs[i].text() == expected[i] and jobs[i].finished().reason in ("stop", "length")


def test_n_choices_share_one_prefill(engine):
    # A raw prompt no slot holds yet: its tokens are decoded once, then copied to 3 siblings.
    request = completion("Zebras in the snow, a story: once", max_tokens=10, n=4)
    before = counters(engine)
    job = RecordingJob(request)
    run(engine, [job])
    after = counters(engine)
    prompt_tokens = job.started.prompt_tokens
    assert after["evaluated"] - before["evaluated"] == prompt_tokens
    assert after["shared"] - before["shared"] == 3 * prompt_tokens
    greedy = solo(engine, completion("Zebras in the snow, a story: once", max_tokens=10)).text()
    assert [job.text(i) for i in range(4)] == [greedy] * 4
    assert sorted(job.finished(i).index for i in range(4)) == [0, 1, 2, 3]


def test_sampled_choices_differ_and_repeat_with_a_seed(engine):
    def choices():
        job = RecordingJob(chat(PROMPTS[0], n=3, temperature=1.0, seed=7, max_tokens=12))
        run(engine, [job])
        return [job.text(i) for i in range(3)]

    first = choices()
    assert len(set(first)) > 1  # seed + i per choice
    assert choices() == first
    alone = solo(engine, chat(PROMPTS[0], temperature=1.0, seed=8, max_tokens=12)).text()
    assert alone == first[1]  # choice 1 samples with seed + 1, batched or not


def test_prefix_reuse_hit_and_miss(reusing):
    engine = reusing
    turn1 = chat("My name is Ada. Remember it.", max_tokens=8)
    job1 = solo(engine, turn1)
    history = (ChatMessage("user", "My name is Ada. Remember it."), ChatMessage("assistant", job1.text()),
               ChatMessage("user", "What is my name?"))
    turn2 = dataclasses.replace(turn1, messages=history)
    before = counters(engine)
    hit = solo(engine, turn2)
    after = counters(engine)
    reused = after["reused"] - before["reused"]
    assert reused >= job1.started.prompt_tokens  # turn 1's whole prompt (and the reply) came from the cells
    assert after["evaluated"] - before["evaluated"] == hit.started.prompt_tokens - reused

    # The same conversation on a fresh engine decodes every token, and answers the same.
    from inference.bundled import smollm2_gguf

    fresh = BatchedLlamaEngine.load(make_spec(smollm2_gguf(), parallel=2))
    try:
        miss = solo(fresh, turn2)
        assert counters(fresh)["reused"] == 0
        assert counters(fresh)["evaluated"] == miss.started.prompt_tokens
    finally:
        fresh.close()
    assert miss.text() == hit.text()


def test_a_prompt_sharing_nothing_reuses_nothing(reusing):
    engine = reusing
    solo(engine, chat("My name is Ada. Remember it.", max_tokens=4))  # something cached to not match
    before = counters(engine)
    job = solo(engine, completion("Quantum walruses debate", max_tokens=2))
    after = counters(engine)
    assert after["reused"] - before["reused"] <= 1  # at most a shared start-of-text token
    assert after["evaluated"] - before["evaluated"] >= job.started.prompt_tokens - 1


def test_full_engine_queues_instead_of_failing(smollm2_path):
    small = BatchedLlamaEngine.load(make_spec(smollm2_path, parallel=2))
    try:
        requests = [chat(p, max_tokens=8) for p in PROMPTS[:5]]
        expected = [solo(small, r).text() for r in requests]
        jobs = [RecordingJob(r) for r in requests]
        for job in jobs:  # more than it has slots: admitted all the same, they wait inside
            small.admit(job)
        assert small.free_slots() == 0 and small.stats().active == 2
        run(small, [])
        assert [j.text() for j in jobs] == expected
        # n larger than parallel: the choices take turns in the two slots.
        job = RecordingJob(chat(PROMPTS[0], n=3, max_tokens=8))
        run(small, [job])
        assert [job.text(i) for i in range(3)] == [expected[0]] * 3
    finally:
        small.close()


def test_max_tokens_stop_strings_and_context_end(engine):
    job = solo(engine, completion("Once upon a time", max_tokens=7))
    assert job.finished() == Finished("length", job.started.prompt_tokens, 7)
    full = solo(engine, completion("Once upon a time", max_tokens=40)).text()
    stop = full[10:14]
    cut = solo(engine, completion("Once upon a time", max_tokens=40, stop=[stop]))
    assert cut.finished().reason == "stop" and cut.text() == full[: full.index(stop)]
    long = solo(engine, completion("hello " * 500, max_tokens=100))
    assert long.finished().reason == "length"
    assert long.started.prompt_tokens + long.finished().completion_tokens == 512


def test_logprobs_are_of_the_raw_logits(engine):
    job = solo(engine, chat(PROMPTS[1], max_tokens=8, logprobs=True, top_logprobs=3))
    entries = job.logprobs()
    assert len(entries) == job.finished().completion_tokens
    assert "".join(e.token for e in entries) == job.text()
    for e in entries:
        assert e.logprob <= 0 and len(e.top) == 3
        assert e.top[0][1] == pytest.approx(e.logprob)


def test_at_a_stop_string_the_logprobs_are_of_the_tokens_before_it(engine):
    prompt = "Once upon a time"
    full = solo(engine, completion(prompt, max_tokens=24, logprobs=True))
    tokens = [e.token for e in full.logprobs()]
    at = next(i for i in range(4, len(tokens)) if tokens[i].strip() and tokens[i] not in "".join(tokens[:i]))
    cut = solo(engine, completion(prompt, max_tokens=24, logprobs=True, stop=[tokens[at]]))  # a whole token
    assert cut.finished().reason == "stop" and cut.text() == "".join(tokens[:at])
    assert [e.token for e in cut.logprobs()] == tokens[:at]  # not the stop's token


def test_logit_bias_bans_and_forces(engine):
    model = engine._model
    text = solo(engine, completion("The capital of France is", max_tokens=1)).text()
    first = model.tokenize(text.encode(), False, False)[0]
    banned = solo(engine, completion("The capital of France is", max_tokens=1, logit_bias={first: -100})).text()
    assert banned != text
    forced_id = model.tokenize(b" banana", False, False)[0]
    forced = solo(engine, completion("The capital of France is", max_tokens=1, logit_bias={forced_id: 100})).text()
    assert forced == model.detokenize([forced_id]).decode()


def test_bad_requests_fail_alone(engine):
    jobs = [RecordingJob(completion("hello " * 600)), RecordingJob(completion("x", logit_bias={10**9: 1.0})),
            RecordingJob(completion((1, 2, 10**9))), RecordingJob(chat(PROMPTS[1], max_tokens=4))]
    run(engine, jobs)
    assert isinstance(jobs[0].failed, ContextLengthExceeded) and "512" in jobs[0].failed.message
    assert isinstance(jobs[1].failed, InvalidRequest) and jobs[1].failed.param == "logit_bias"
    assert isinstance(jobs[2].failed, InvalidRequest) and jobs[2].failed.param == "prompt"
    assert jobs[3].failed is None and jobs[3].text()
    assert engine.active() == 0


def test_token_id_prompt_and_echo(engine):
    ids = tuple(engine._model.tokenize(b"Once upon a time", True, True))
    job = solo(engine, completion(ids, echo=True, max_tokens=5))
    assert job.started.prompt_tokens == len(ids) and "Once upon a time" in job.started.echo
    assert job.text() == solo(engine, completion("Once upon a time", max_tokens=5)).text()


def test_parallel_one_still_serves(smollm2_path):
    one = BatchedLlamaEngine.load(make_spec(smollm2_path, parallel=1))
    try:
        jobs = [RecordingJob(chat(p, max_tokens=6)) for p in PROMPTS[:2]]
        run(one, jobs)
        assert all(j.finished().completion_tokens for j in jobs)
        assert one.stats().kv_cells_total == 512
    finally:
        one.close()


def test_missing_model_file_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable, match="model file not found"):
        BatchedLlamaEngine.load(make_spec(str(tmp_path / "nope.gguf")))


def test_plain_greedy_argmax_picks_what_llamas_greedy_sampler_picks(engine):
    # No bias and neutral penalties take the argmax path; a zero bias goes through llama.cpp's chain.
    fast = solo(engine, chat(PROMPTS[2], max_tokens=16))
    chained = solo(engine, chat(PROMPTS[2], max_tokens=16, logit_bias={5: 0.0}))
    assert fast.text() == chained.text() and fast.finished() == chained.finished()


def test_max_tokens_inside_a_character_drops_its_first_bytes_and_their_tokens_logprobs(engine):
    """An emoji is 3 SmolLM2 tokens: stopped inside one, the answer ends before it; the logprobs keep
    the tokens whose bytes reached the text; completion_tokens counts every generated token."""
    full = solo(engine, chat("Write three emoji: ", max_tokens=12, logprobs=True))
    pieces = [bytes(e.bytes) for e in full.logprobs()]
    n, whole = cut_inside_a_character(pieces)
    cut = solo(engine, chat("Write three emoji: ", max_tokens=n, logprobs=True))
    assert cut.finished() == Finished("length", cut.started.prompt_tokens, n)
    assert cut.text() == b"".join(pieces[:whole]).decode("utf-8") and "\ufffd" not in cut.text()
    assert [bytes(e.bytes) for e in cut.logprobs()] == pieces[:whole]
