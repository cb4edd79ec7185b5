"""The llama.cpp backend on the real bundled SmolLM2 GGUF (answers are poor: test structure)."""

import pytest

from inference.backends.llamacpp import LlamaCppBackend
from inference.events import Delta, Finished, Started
from inference.params import ChatMessage, GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import ContextLengthExceeded, InvalidRequest, ModelUnavailable
from tests.inference.split_characters import cut_inside_a_character


def make_spec(path, **load):
    return ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=path, load={"n_ctx": 512, "n_threads": 2, **load}, defaults={})


@pytest.fixture(scope="module")
def backend():
    from inference.bundled import smollm2_gguf

    b = LlamaCppBackend.load(make_spec(smollm2_gguf()))
    yield b
    b.close()


def run(backend, should_stop=lambda: False, messages=None, prompt=None, echo=False, **sampling):
    if messages is None and prompt is None:
        messages = (ChatMessage("user", "Write a short poem about the sea."),)
    request = GenerationRequest(sampling=resolve_sampling(sampling, {}), messages=messages, prompt=prompt, echo=echo)
    events = list(backend.generate(request, should_stop))
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    deltas = [e for e in events if isinstance(e, Delta)]
    return events[0], "".join(d.text for d in deltas), deltas, events[-1]


def test_chat_uses_the_gguf_template_and_counts_tokens(backend):
    started, text, _, finished = run(backend, temperature=0, max_tokens=12)
    assert started.prompt_tokens > 10  # the template's system prompt and role markers
    assert text and finished.completion_tokens <= 12
    assert finished.reason in ("stop", "length")


def test_max_tokens_stops_with_length(backend):
    _, _, _, finished = run(backend, prompt="Once upon a time", temperature=0, max_tokens=7)
    assert finished == Finished("length", finished.prompt_tokens, 7)


def test_stop_string_cuts_the_output_before_it(backend):
    _, full, _, _ = run(backend, prompt="Once upon a time", temperature=0, max_tokens=40)
    stop = full[10:14]
    _, text, _, finished = run(backend, prompt="Once upon a time", temperature=0, max_tokens=40, stop=[stop])
    assert finished.reason == "stop"
    assert text == full[: full.index(stop)]


def test_logprobs_match_the_greedy_choice(backend):
    _, text, deltas, finished = run(backend, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    entries = [lp for d in deltas for lp in (d.logprobs or [])]
    assert len(entries) == finished.completion_tokens
    assert "".join(e.token for e in entries) == text
    for e in entries:
        assert e.logprob <= 0 and len(e.top) == 3
        assert e.top[0][1] == pytest.approx(e.logprob)  # greedy picks the most likely token
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token


def test_logit_bias_bans_and_forces_tokens(backend):
    llama = backend._llama
    _, text, deltas, _ = run(backend, prompt="The capital of France is", temperature=0, max_tokens=1)
    first = llama.tokenize(text.encode(), add_bos=False, special=False)[0]
    _, banned, _, _ = run(backend, prompt="The capital of France is", temperature=0, max_tokens=1, logit_bias={first: -100})
    assert banned != text
    forced_id = llama.tokenize(b" banana", add_bos=False, special=False)[0]
    _, forced, _, _ = run(backend, prompt="The capital of France is", temperature=0, max_tokens=1, logit_bias={forced_id: 100})
    assert forced == llama.detokenize([forced_id]).decode()


def test_logit_bias_outside_the_vocabulary_is_invalid(backend):
    with pytest.raises(InvalidRequest) as info:
        run(backend, prompt="x", logit_bias={10**9: 1.0})
    assert info.value.param == "logit_bias"


def test_prompt_longer_than_context_is_refused_before_generating(backend):
    with pytest.raises(ContextLengthExceeded) as info:
        run(backend, prompt="hello " * 600)
    assert info.value.param == "prompt" and "512" in info.value.message


def test_generation_stops_at_the_end_of_the_context(backend):
    started, _, _, finished = run(backend, prompt="hello " * 500, temperature=0, max_tokens=100)
    assert finished.reason == "length"
    assert started.prompt_tokens + finished.completion_tokens == 512


def test_should_stop_cancels_within_a_token(backend):
    produced = []

    def should_stop():
        return len(produced) >= 3

    request = GenerationRequest(sampling=resolve_sampling({"temperature": 0, "max_tokens": 200}, {}), prompt="Count: 1, 2, 3,")
    for event in backend.generate(request, should_stop):
        if isinstance(event, Delta):
            produced.append(event)
        last = event
    assert last.reason == "cancelled" and last.completion_tokens <= 4


def test_token_id_prompt_and_echo(backend):
    ids = tuple(backend._llama.tokenize(b"Once upon a time", add_bos=True, special=True))
    started, text, _, _ = run(backend, prompt=ids, echo=True, temperature=0, max_tokens=5)
    assert started.prompt_tokens == len(ids) and "Once upon a time" in started.echo
    assert text == run(backend, prompt="Once upon a time", temperature=0, max_tokens=5)[1]


def test_token_ids_outside_the_vocabulary_are_invalid(backend):
    with pytest.raises(InvalidRequest):
        run(backend, prompt=(1, 2, 10**9))


def test_missing_model_file_is_unavailable_not_a_crash(tmp_path):
    with pytest.raises(ModelUnavailable, match="model file not found"):
        LlamaCppBackend.load(make_spec(str(tmp_path / "nope.gguf")))


def test_corrupt_model_file_is_unavailable_not_a_crash(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelUnavailable, match="bad.gguf: not a GGUF file"):
        LlamaCppBackend.load(make_spec(str(bad)))


def test_named_chat_format_override(backend, smollm2_path):
    """SmolLM2's own template is ChatML-like, so the override is shown with a different format."""
    messages = (ChatMessage("user", "Write a short poem about the sea."),)
    request = GenerationRequest(sampling=resolve_sampling({"temperature": 0, "max_tokens": 4}, {}), messages=messages)
    llama2 = LlamaCppBackend.load(make_spec(smollm2_path, chat_format="llama-2"))
    try:
        own_prompt = backend._llama.detokenize(backend._prompts.build(request).tokens, special=True).decode()
        forced_prompt = llama2._llama.detokenize(llama2._prompts.build(request).tokens, special=True).decode()
        assert "<|im_start|>user" in own_prompt and "[INST]" not in own_prompt
        assert "[INST]" in forced_prompt and "<|im_start|>" not in forced_prompt
        started, text, _, _ = run(llama2, messages=messages, temperature=0, max_tokens=4)
        assert started.prompt_tokens == len(llama2._llama.tokenize(forced_prompt.encode(), add_bos=False, special=True))
        assert started.prompt_tokens != run(backend, messages=messages, temperature=0, max_tokens=4)[0].prompt_tokens
    finally:
        llama2.close()


def test_max_tokens_inside_a_character_drops_its_first_bytes_and_their_tokens_logprobs(backend):
    messages = (ChatMessage("user", "Write three emoji: "),)
    _, _, deltas, _ = run(backend, messages=messages, temperature=0, max_tokens=12, logprobs=True)
    pieces = [bytes(lp.bytes) for d in deltas for lp in (d.logprobs or [])]
    n, whole = cut_inside_a_character(pieces)
    _, text, deltas, finished = run(backend, messages=messages, temperature=0, max_tokens=n, logprobs=True)
    assert finished.reason == "length" and finished.completion_tokens == n
    assert text == b"".join(pieces[:whole]).decode("utf-8") and "\ufffd" not in text
    assert [bytes(lp.bytes) for d in deltas for lp in (d.logprobs or [])] == pieces[:whole]
