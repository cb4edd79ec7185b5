import openai
import pytest

from tests.server import HTTP_TIMEOUT


@pytest.fixture(scope="session")
def client(llm_server):
    """The official openai client on the shared server (no retries: a failure shows)."""
    return openai.OpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)
