"""The request parameters the README says are honoured, through HTTP on the real SmolLM2.

The shared server runs without the cache, and every answer compared with another is checked
to have been generated (`X-Cache: MISS`), never replayed.
"""

from __future__ import annotations

import json
from itertools import accumulate

import httpx
import openai
import pytest

from tests.e2e.live import EOG_BAN, chat_text, completion_text, live
from tests.inference.split_characters import cut_inside_a_character

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "Name three colours."}]


def chat(client, **kwargs):
    return live(client.chat.completions, model="light", messages=kwargs.pop("messages", USER), **kwargs)


def content(reply) -> str:
    return reply.choices[0].message.content


def test_n_choices_sample_with_seed_plus_i(client):
    reply = chat(client, n=3, seed=11, temperature=1.0, max_tokens=8)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for i, choice in enumerate(reply.choices):
        assert choice.message.content == content(chat(client, seed=11 + i, temperature=1.0, max_tokens=8))
    assert len({c.message.content for c in reply.choices}) > 1


def test_n_is_capped_at_16(client):
    reply = chat(client, n=16, temperature=0, max_tokens=1)
    assert [c.index for c in reply.choices] == list(range(16)) and reply.usage.completion_tokens == 16
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="light", messages=USER, n=17, max_tokens=1)
    assert info.value.body["param"] == "n"


def test_completions_logprobs_have_the_legacy_shape(client):
    reply = live(client.completions, model="light", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == list(accumulate([0] + [len(t) for t in lp.tokens[:-1]]))
    for logprob, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0 and 1 <= len(top) <= 2
        assert max(top.values()) == pytest.approx(logprob)  # greedy took the most likely token
    streamed = live(client.completions, model="light", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2, stream=True)
    pieces = [c.choices[0].logprobs for c in streamed if c.choices and c.choices[0].text]
    assert [t for p in pieces for t in p.tokens] == lp.tokens
    assert [o for p in pieces for o in p.text_offset] == lp.text_offset


def test_stop_as_a_string_and_as_a_list(client):
    full = content(chat(client, temperature=0, max_tokens=24))
    words = full.split()
    assert len(words) > 6, full
    one = chat(client, temperature=0, max_tokens=24, stop=words[4])
    assert content(one) == full[: full.index(words[4])] and one.choices[0].finish_reason == "stop"
    many = chat(client, temperature=0, max_tokens=24, stop=["never-in-the-text", words[6]])
    assert content(many) == full[: full.index(words[6])] and many.choices[0].finish_reason == "stop"
    streamed = chat(client, temperature=0, max_tokens=24, stop=words[4], stream=True)
    assert chat_text(streamed) == content(one)


def test_penalties_change_the_output(client):
    greedy = content(chat(client, temperature=0, max_tokens=18))
    for penalty in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"extra_body": {"repeat_penalty": 1.5}}):
        assert content(chat(client, temperature=0, max_tokens=18, **penalty)) != greedy, penalty


def test_top_k_and_min_p_narrow_the_sampling(client):
    """At temperature 1.5 a seeded draw differs from the greedy answer; top_k 1 or min_p 1
    leave only the most likely token, so the same draw becomes the greedy answer."""
    greedy = content(chat(client, temperature=0, max_tokens=8))
    for seed in (1, 2):
        sampled = dict(temperature=1.5, seed=seed, max_tokens=8)
        assert content(chat(client, **sampled)) != greedy
        assert content(chat(client, **sampled, extra_body={"top_k": 1})) == greedy
        assert content(chat(client, **sampled, extra_body={"min_p": 1.0})) == greedy


def test_max_completion_tokens_wins_over_max_tokens(client):
    reply = chat(client, temperature=0, max_completion_tokens=3, max_tokens=10, logit_bias=EOG_BAN)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"


def test_an_error_after_the_stream_started_is_sent_in_band(llm_server):
    """The second prompt is too long: found only once the first one's text has been streamed."""
    body = {"model": "light", "prompt": ["Once upon a time", "hello " * 3000], "max_tokens": 3, "temperature": 0, "stream": True}
    with httpx.stream("POST", llm_server.base_url + "/v1/completions", json=body, timeout=120) as r:
        assert r.status_code == 200
        text = r.read().decode()
    frames = [f for f in text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames) and frames[-1] == "data: [DONE]"
    error = json.loads(frames[-2][6:])
    assert set(error) == {"error"} and set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["code"] == "context_length_exceeded"
    chunks = [json.loads(f[6:]) for f in frames[:-2]]
    assert chunks and all(c["choices"][0]["index"] == 0 for c in chunks)  # the first prompt's answer came first
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def _complete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.parametrize("prompt", ["Write three emoji: ", "Translate to Japanese: Hello, how are you?"],
                         ids=["emoji", "japanese"])
def test_characters_split_across_tokens_arrive_whole(client, prompt):
    messages = [{"role": "user", "content": prompt}]
    reply = chat(client, messages=messages, temperature=0, max_tokens=24, logprobs=True)
    text = content(reply)
    tokens = reply.choices[0].logprobs.content
    assert any(not _complete_utf8(bytes(t.bytes)) for t in tokens)  # some characters span several tokens
    assert b"".join(bytes(t.bytes) for t in tokens).decode("utf-8") == text
    # whole characters of several bytes (which ones the model picks varies between runs)
    assert any(len(ch.encode()) > 1 for ch in text) and "\ufffd" not in text
    assert chat_text(chat(client, messages=messages, temperature=0, max_tokens=24, stream=True)) == text


@pytest.mark.parametrize("model", ["light", "light-mlx"])
@pytest.mark.parametrize("prompt", ["Write three emoji: ", "Translate to Japanese: Hello, how are you?"])
def test_an_answer_cut_inside_a_character_ends_before_it(client, model, prompt):
    """max_tokens set to end inside a character (from a longer run's token bytes): the content ends
    before it, no U+FFFD, and the logprobs are of the tokens whose bytes reached the content, streamed
    or not; usage still counts every generated token."""
    ask = dict(model=model, messages=[{"role": "user", "content": prompt}], temperature=0, logprobs=True)
    longer = live(client.chat.completions, **ask, max_tokens=8)
    pieces = [bytes(t.bytes) for t in longer.choices[0].logprobs.content]
    n, whole = cut_inside_a_character(pieces)
    reply = live(client.chat.completions, **ask, max_tokens=n)
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and reply.usage.completion_tokens == n
    assert content(reply) == b"".join(pieces[:whole]).decode("utf-8") and "\ufffd" not in content(reply)
    assert [bytes(t.bytes) for t in choice.logprobs.content] == pieces[:whole]
    streamed = live(client.chat.completions, **ask, max_tokens=n, stream=True, stream_options={"include_usage": True})
    assert chat_text(streamed) == content(reply) and streamed[-1].usage.completion_tokens == n
    entries = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [bytes(t.bytes) for t in entries] == pieces[:whole]


@pytest.fixture(scope="module")
def vocab(smollm2_path):
    """SmolLM2's tokenizer (the GGUF's vocabulary only), to send token ids as a client would."""
    from llama_cpp import Llama

    llama = Llama(model_path=smollm2_path, vocab_only=True, verbose=False)
    yield llama
    llama.close()


def test_token_id_prompts(client, vocab):
    ids = vocab.tokenize(b"Once upon a time", add_bos=True, special=True)
    other = vocab.tokenize(b"The sky is", add_bos=True, special=True)
    as_text = live(client.completions, model="light", prompt=["Once upon a time", "The sky is"], max_tokens=6, temperature=0)
    as_ids = live(client.completions, model="light", prompt=ids, max_tokens=6, temperature=0, echo=True)
    assert as_ids.choices[0].text == "Once upon a time" + as_text.choices[0].text
    assert as_ids.usage.prompt_tokens == len(ids)
    both = live(client.completions, model="light", prompt=[ids, other], max_tokens=6, temperature=0, stream=True)
    assert completion_text([c for c in both if c.choices and c.choices[0].index == 1]) == as_text.choices[1].text
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="light", prompt=[1, 2, 10**9], max_tokens=1)
    assert info.value.body["param"] == "prompt"
