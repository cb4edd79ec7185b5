"""The bad-input corpus (issue 11) against a real server with the real models: every case gets a
clear 4xx OpenAI envelope (or a correct answer), never a 5xx; after each one /health answers and
the server's RSS stays under a bound."""

import json

import httpx
import psutil
import pytest

from tests.server import LiveServer

pytestmark = pytest.mark.e2e
RSS_MARGIN = 768 * 2**20  # over the RSS with every tier loaded
JSON = {"Content-Type": "application/json"}
USER = [{"role": "user", "content": "hi"}]


def chat(**extra):
    return {"model": "light", "messages": USER, "max_tokens": 2, **extra}


def nested(depth, leaf="[]"):
    return "[" * depth + leaf + "]" * depth


def deep_schema(depth):
    schema = {"type": "string", "maxLength": 3}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"], "additionalProperties": False}
    return schema


# (name, path, body: dict | str | bytes, extra headers, expected statuses)
CASES = [
    # 1. lone surrogates
    ("surrogate in a message", "/v1/chat/completions", '{"model": "light", "messages": [{"role": "user", "content": "\\ud800"}]}', {}, {400}),
    ("surrogate in a prompt", "/v1/completions", '{"model": "light", "prompt": "a\\udfffb"}', {}, {400}),
    ("surrogate in an embedding input", "/v1/embeddings", '{"model": "embed", "input": ["ok", "\\ud800"]}', {}, {400}),
    ("surrogate in a rerank document", "/v1/rerank", '{"model": "rerank", "query": "q", "documents": ["\\udc00"]}', {}, {400}),
    ("surrogate in a tool name", "/v1/chat/completions", json.dumps(chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]))[:-1] + ', "user": "\\ud800"}', {}, {400}),
    # 2. empty prompts
    ("empty prompt", "/v1/completions", {"model": "light", "prompt": ""}, {}, {400}),
    ("an empty prompt in a list", "/v1/completions", {"model": "light", "prompt": ["ok", ""]}, {}, {400}),
    ("empty token list", "/v1/completions", {"model": "light", "prompt": [[]]}, {}, {400}),
    # 3-5. size, host, content type
    ("17 MB body", "/v1/chat/completions", b'{"model": "light", "messages": [{"role": "user", "content": "' + b"a" * (17 * 2**20) + b'"}]}', {}, {413}),
    ("foreign Host", "/v1/chat/completions", chat(), {"Host": "evil.example"}, {400}),
    ("text/plain", "/v1/chat/completions", chat(), {"Content-Type": "text/plain"}, {415}),
    ("form post", "/v1/completions", "model=light&prompt=x", {"Content-Type": "application/x-www-form-urlencoded"}, {415}),
    # not JSON, or JSON Python accepts but JSON does not
    ("NaN", "/v1/chat/completions", '{"model": "light", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', {}, {400}),
    ("invalid UTF-8", "/v1/completions", b'{"model": "light", "prompt": "\xc3\x28"}', {}, {400}),
    ("truncated JSON", "/v1/completions", '{"model": "light", "prompt": "x"', {}, {400}),
    ("a JSON array", "/v1/chat/completions", "[]", {}, {400}),
    ("JSON null", "/v1/embeddings", "null", {}, {400}),
    ("empty body", "/v1/rerank", "", {}, {400}),
    # nesting
    ("10,000-level nesting in messages", "/v1/chat/completions", '{"model": "light", "messages": ' + nested(10_000) + "}", {}, {400}),
    ("10,000-level nesting in a schema", "/v1/chat/completions", '{"model": "light", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": ' + "{\"a\": " * 10_000 + "1" + "}" * 10_000 + "}}}", {}, {400}),
    ("10,000-level nesting in an embedding input", "/v1/embeddings", '{"model": "embed", "input": ' + nested(10_000, "1") + "}", {}, {400}),
    ("a 40-level schema", "/v1/chat/completions", chat(max_tokens=8, response_format={"type": "json_schema", "json_schema": {"name": "deep", "schema": deep_schema(40)}}), {}, {200, 400}),
    # many things
    ("10,000 messages", "/v1/chat/completions", {"model": "light", "messages": USER * 10_000, "max_tokens": 1}, {}, {400}),
    ("100,000 prompt token ids", "/v1/completions", {"model": "light", "prompt": [1] * 100_000, "max_tokens": 1}, {}, {400}),
    ("64 prompts x n=16", "/v1/completions", {"model": "light", "prompt": ["x"] * 64, "n": 16}, {}, {400}),
    ("10,000 embedding inputs", "/v1/embeddings", {"model": "embed", "input": ["x"] * 10_000}, {}, {400}),
    ("over the embedding token cap", "/v1/embeddings", {"model": "embed", "input": ["word " * 200] * 1000, "truncate": True}, {}, {400}),
    ("5,000 rerank documents", "/v1/rerank", {"model": "rerank", "query": "q", "documents": ["d"] * 5000}, {}, {400}),
    ("over the rerank token cap", "/v1/rerank", {"model": "rerank", "query": "q", "documents": ["word " * 400] * 900}, {}, {400}),
    ("a 4 MB prompt", "/v1/completions", {"model": "light", "prompt": "hello " * 700_000, "max_tokens": 1}, {}, {400}),
    # huge numbers
    ("max_tokens 10**30", "/v1/chat/completions", chat(max_tokens=10**30, stop=["\n"]), {}, {200}),
    ("max_tokens 1e30", "/v1/chat/completions", chat(max_tokens=1e30), {}, {400}),
    ("n 10**30", "/v1/chat/completions", chat(n=10**30), {}, {400}),
    ("seed 10**30", "/v1/chat/completions", chat(seed=10**30), {}, {200}),
    ("seed -10**30", "/v1/chat/completions", chat(seed=-10**30), {}, {200}),
    ("temperature 1e308", "/v1/chat/completions", chat(temperature=1e308), {}, {400}),
    ("temperature 1e400", "/v1/chat/completions", '{"model": "light", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}', {}, {400}),
    ("top_k 10**30", "/v1/chat/completions", chat(top_k=10**30), {}, {200, 400}),
    ("logit_bias 1e308", "/v1/chat/completions", chat(logit_bias={"1": 1e308}), {}, {400}),
    ("logit_bias id 10**30", "/v1/chat/completions", chat(logit_bias={str(10**30): 1}), {}, {400}),
    ("top_logprobs 10**30", "/v1/chat/completions", chat(logprobs=True, top_logprobs=10**30), {}, {400}),
    ("dimensions 10**30", "/v1/embeddings", {"model": "embed", "input": "x", "dimensions": 10**30}, {}, {400}),
    ("token id 10**30", "/v1/embeddings", {"model": "embed", "input": [10**30]}, {}, {400}),
    ("top_n 10**30", "/v1/rerank", {"model": "rerank", "query": "q", "documents": ["a", "b"], "top_n": 10**30}, {}, {200}),
    # the Responses API (issue 14)
    ("responses: surrogate in input", "/v1/responses", '{"model": "light", "input": "a\\ud800"}', {}, {400}),
    ("responses: 10,000 input items", "/v1/responses", {"model": "light", "input": [{"role": "user", "content": "hi"}] * 10_000, "max_output_tokens": 1}, {}, {400}),
    ("responses: 10,000-level nesting in input", "/v1/responses", '{"model": "light", "input": ' + nested(10_000) + "}", {}, {400}),
    ("responses: a 40-level text.format schema", "/v1/responses", {"model": "light", "input": "x", "max_output_tokens": 8, "text": {"format": {"type": "json_schema", "name": "deep", "schema": deep_schema(40)}}}, {}, {200, 400}),
    ("responses: max_output_tokens 10**30", "/v1/responses", {"model": "light", "input": "hi", "max_output_tokens": 10**30, "text": {"format": {"type": "json_schema", "name": "b", "schema": {"type": "boolean"}}}}, {}, {200}),
    ("responses: temperature 1e308", "/v1/responses", {"model": "light", "input": "hi", "temperature": 1e308}, {}, {400}),
    ("responses: an unknown item type", "/v1/responses", {"model": "light", "input": [{"type": "x" * 10_000}]}, {}, {400}),
    ("responses: a 4 MB function output", "/v1/responses", {"model": "light", "input": [{"type": "function_call_output", "call_id": "c", "output": "word " * 800_000}], "max_output_tokens": 1}, {}, {400}),
    ("responses: an unknown previous_response_id", "/v1/responses", {"model": "light", "input": "hi", "previous_response_id": "resp_" + "9" * 5000}, {}, {404}),
    # routes and methods
    ("unknown route", "/v1/nothing-here", chat(), {}, {404}),
    ("unknown model", "/v1/chat/completions", chat(model="../../etc/passwd"), {}, {404}),
]


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("corpus"), env={"CACHE_REQUESTS": "none", "REQUEST_TIMEOUT_SECONDS": "20"})
    server.start()
    try:
        with server.client() as client:  # load every tier first: the bound is over a loaded server
            client.post("/v1/chat/completions", json=chat()).raise_for_status()
            client.post("/v1/embeddings", json={"model": "embed", "input": "x"}).raise_for_status()
            client.post("/v1/rerank", json={"model": "rerank", "query": "q", "documents": ["d"]}).raise_for_status()
    except BaseException:
        server.stop()  # a failed warm-up never leaves its server behind
        raise
    server.rss_bound = psutil.Process(server.process.pid).memory_info().rss + RSS_MARGIN
    yield server
    server.stop()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("name, path, body, headers, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly_and_the_server_stays_well(corpus_server, name, path, body, headers, expected):
    if isinstance(body, dict):
        content = json.dumps(body).encode()
    else:
        content = body.encode() if isinstance(body, str) else body
    with corpus_server.client() as client:
        r = client.post(path, content=content, headers={**JSON, **headers})
        assert r.status_code in expected, r.text[:500]
        if r.status_code >= 400:
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"]
            assert "Traceback" not in error["message"] and str(corpus_server.workdir) not in error["message"]
        assert client.get("/health").status_code == 200
    rss = psutil.Process(corpus_server.process.pid).memory_info().rss
    assert rss < corpus_server.rss_bound, f"RSS {rss / 2**20:.0f} MiB after '{name}'"


def test_a_chunked_body_over_the_limit_is_refused(corpus_server):
    def chunks():
        for _ in range(20):
            yield b"a" * 2**20

    with httpx.Client(base_url=corpus_server.base_url, timeout=120) as client:
        r = client.post("/v1/chat/completions", content=chunks(), headers=JSON)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert client.get("/health").status_code == 200
