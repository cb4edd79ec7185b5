"""LangChain's ChatOpenAI against the real server and model, unchanged but for base_url."""

import pytest
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def llm(llm_server):
    return ChatOpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", model="light", max_tokens=12, temperature=0, max_retries=0, timeout=120)


def test_invoke(llm):
    message = llm.invoke("Say hello.")
    assert isinstance(message.content, str) and message.content
    assert message.response_metadata["model_name"] == "light"
    assert message.usage_metadata["output_tokens"] <= 12


def test_stream_merges_into_the_same_answer(llm):
    chunks = list(llm.stream("Say hello."))
    assert len(chunks) > 1
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == llm.invoke("Say hello.").content


def test_batch(llm):
    replies = llm.batch(["Say hello.", "Say goodbye."])
    assert len(replies) == 2 and all(r.content for r in replies)
