"""schemathesis against our own OpenAPI document (/v1/openapi.json), on a real server with the
real models: no 5xx, the declared error responses match their schema, and every error is an
OpenAI envelope. Bounded: MAX_EXAMPLES per operation and generation mode (positive: valid per
the schema; negative: invalid), TIME_BUDGET seconds in all; a short request deadline and small
caps keep each request quick."""

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.server import LiveServer

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = 25
BUDGET_SECONDS = 25.0  # per operation and mode: 18 x 25 s at most
ENVELOPE_KEYS = {"message", "type", "param", "code"}
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/rerank"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
]
# A random `model` is almost always a 404: most cases name the endpoint's real tier instead.
REAL_TIER = {"/v1/chat/completions": "light", "/v1/completions": "light", "/v1/embeddings": "embed",
             "/v1/rerank": "rerank", "/v1/models/{model_id}": "light", "/v1/responses": "light"}
_run = {"requests": 0, "statuses": {}}


@schemathesis.check
def openai_error_envelope(ctx, response, case):
    """Every 4xx/5xx is {"error": {"message", "type", "param", "code"}}, message a non-empty string."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert set(body) == {"error"}, f"not an OpenAI error envelope: {body}"
    assert set(body["error"]) == ENVELOPE_KEYS, f"error keys {sorted(body['error'])}"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return True


@schemathesis.check
def no_unexpected_server_error(ctx, response, case):
    """5xx only as the declared outcomes: 503 (a model can't load), 504 (the deadline passed)."""
    assert response.status_code < 500 or response.status_code in (503, 504), f"HTTP {response.status_code}"
    return True


CHECKS = [no_unexpected_server_error, response_schema_conformance, openai_error_envelope]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, request):
    env = {
        "LIGHT_N_CTX": "512",
        "REQUEST_TIMEOUT_SECONDS": "3",
        "COMPLETIONS_MAX_GENERATIONS": "4",
        "EMBEDDING_MAX_TOTAL_TOKENS": "2048",
        "RERANK_MAX_TOTAL_TOKENS": "4096",
        "CACHE_REQUESTS": "none",
    }
    server = LiveServer(tmp_path_factory.mktemp("fuzz"), env=env).start()
    yield server
    server.stop()
    statuses = dict(sorted(_run["statuses"].items()))
    print(f"schemathesis: {_run['requests']} requests, statuses {statuses}")  # shown with -s
    assert "Traceback" not in server.log()
    if _run["requests"]:  # (none when only some of this module's tests were selected)
        assert _run["requests"] >= 100, statuses


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.base_url + "/v1/openapi.json")


def test_every_operation_is_fuzzed(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("method, path", OPERATIONS)
def test_the_api_holds_its_contract(api_schema, fuzz_server, method, path, mode):
    operation = api_schema[path][method]
    ends = time.monotonic() + BUDGET_SECONDS

    @given(case=operation.as_strategy(generation_mode=mode), real=st.integers(0, 4))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def one(case, real):
        if time.monotonic() > ends:
            return  # this operation's time budget is spent: its remaining cases are not sent
        if real and path in REAL_TIER:
            if isinstance(case.body, dict):
                case.body["model"] = REAL_TIER[path]
            elif case.path_parameters:
                case.path_parameters["model_id"] = REAL_TIER[path]
        response = case.call_and_validate(base_url=fuzz_server.base_url, timeout=60, checks=CHECKS)
        _run["requests"] += 1
        _run["statuses"][response.status_code] = _run["statuses"].get(response.status_code, 0) + 1

    one()
