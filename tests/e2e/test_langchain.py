"""LangChain's ChatOpenAI against the real server and model, unchanged but for base_url."""

import httpx
import pytest
from langchain_openai import ChatOpenAI

from tests.server import HTTP_TIMEOUT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cache_outcomes() -> list[str]:
    """The X-Cache header of every response the module's client received, in order."""
    return []


@pytest.fixture(scope="module")
def llm(llm_server, cache_outcomes):
    def record(response: httpx.Response) -> None:
        cache_outcomes.append(response.headers.get("x-cache", "none"))

    http = httpx.Client(timeout=HTTP_TIMEOUT, event_hooks={"response": [record]})
    yield ChatOpenAI(
        base_url=llm_server.base_url + "/v1", api_key="unused", model="light", max_tokens=12, temperature=0,
        max_retries=0, timeout=HTTP_TIMEOUT, http_client=http,
    )
    http.close()


def test_invoke(llm):
    message = llm.invoke("Say hello.")
    assert isinstance(message.content, str) and message.content
    assert message.response_metadata["model_name"] == "light"
    assert message.usage_metadata["output_tokens"] <= 12


def test_stream_merges_into_the_same_answer(llm, cache_outcomes):
    cache_outcomes.clear()
    chunks = list(llm.stream("Say hello."))
    assert len(chunks) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == llm.invoke("Say hello.").content
    assert cache_outcomes == ["MISS", "MISS"]  # two live generations, not a replay of the first


def test_batch(llm):
    replies = llm.batch(["Say hello.", "Say goodbye."])
    assert len(replies) == 2 and all(r.content for r in replies)
