"""POST /v1/rerank (and /rerank) through Django's async client, with the project's distilled reranker."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from registry.models import Tier
from tests.helpers import unload_everything
from tests.openai_api.test_embeddings_api import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

QUERY = "what do cats eat"
DOCUMENTS = [
    "The stock market fell sharply on Monday.",
    "Cats are carnivores and need a diet rich in meat.",
    "Paris is the capital of France.",
]


@pytest.fixture
def tiers(reranker_path, minilm_path):
    Tier.objects.create(name="rerank", kind="rerank", backend="cross_encoder", model_path=reranker_path)
    Tier.objects.create(name="flag", kind="rerank", backend="flag_reranker", model_path=reranker_path)
    Tier.objects.create(name="embed", kind="embedding", backend="sentence_transformers", model_path=minilm_path)
    yield
    unload_everything()


async def post(payload, path="/v1/rerank"):
    response = await AsyncClient().post(path, json.dumps(payload), content_type="application/json")
    return response, json.loads(response.content)


@pytest.mark.parametrize("model", ["rerank", "flag"])
async def test_results_sorted_best_first(tiers, model):
    response, body = await post({"model": model, "query": QUERY, "documents": DOCUMENTS})
    assert response.status_code == 200, body
    assert body["model"] == model and body["id"].startswith("rerank-")
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert body["results"][0]["index"] == 1
    assert "document" not in body["results"][0]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


async def test_top_n_return_documents_objects_and_alias(tiers):
    docs = [{"text": d} for d in DOCUMENTS]
    for path in ("/v1/rerank", "/rerank"):
        response, body = await post(
            {"model": "rerank", "query": QUERY, "documents": docs, "top_n": 2, "return_documents": True}, path
        )
        assert response.status_code == 200, body
        assert [r["index"] for r in body["results"]][:1] == [1] and len(body["results"]) == 2
        assert body["results"][0]["document"] == {"text": DOCUMENTS[1]}


async def test_tei_texts_field(tiers):
    response, body = await post({"model": "rerank", "query": QUERY, "texts": DOCUMENTS, "top_n": 10})
    assert response.status_code == 200 and len(body["results"]) == 3


@pytest.mark.parametrize(
    "payload, status, code, param",
    [
        ({"query": QUERY, "documents": []}, 400, None, "documents"),
        ({"query": QUERY}, 400, None, "documents"),
        ({"query": QUERY, "documents": DOCUMENTS, "texts": DOCUMENTS}, 400, None, "texts"),
        ({"query": " ", "documents": DOCUMENTS}, 400, None, "query"),
        ({"query": QUERY, "documents": ["x"] * 1001}, 400, None, "documents"),
        ({"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, 400, None, "top_n"),
        ({"query": QUERY, "documents": [{"txt": "x"}]}, 400, None, None),
        ({"documents": DOCUMENTS}, 400, "missing_required_parameter", "query"),
    ],
)
async def test_bad_inputs_get_the_envelope(tiers, payload, status, code, param):
    response, body = await post({"model": "rerank", **payload})
    assert_error(response, body, status, code, param)


async def test_unknown_model_and_wrong_kind(tiers):
    response, body = await post({"model": "nope", "query": QUERY, "documents": DOCUMENTS})
    assert_error(response, body, 404, "model_not_found", "model")
    response, body = await post({"model": "embed", "query": QUERY, "documents": DOCUMENTS}, "/rerank")
    assert_error(response, body, 400, "model_not_supported", "model")


@pytest.mark.parametrize("model", ["rerank", "flag"])
async def test_a_pair_longer_than_the_model_limit_is_truncated_not_refused(tiers, model):
    long_doc = "Cats are carnivores and eat meat. " + "Some filler words about nothing in particular. " * 100
    usage = []
    for doc in (long_doc, long_doc * 2):
        response, body = await post({"model": model, "query": QUERY, "documents": [DOCUMENTS[0], doc]})
        assert response.status_code == 200, body
        assert body["results"][0]["index"] == 1  # what was kept (the start) still ranks
        usage.append(body["usage"]["prompt_tokens"])
    assert usage[0] == usage[1]  # both pairs were cut to the model's limit
    assert usage[0] < 512 + 20
