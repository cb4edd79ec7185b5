"""/v1/responses and the response cache on a real server with SmolLM2: a hit is rendered as the live
answer is (objects and event sequences alike), and `previous_response_id` is resolved before the key."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.server import LiveServer

pytestmark = pytest.mark.e2e

EVENTS = TypeAdapter(ResponseStreamEvent)
ASK = {"model": "light", "temperature": 0, "max_output_tokens": 6}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("responses-cache"), env={"TIER_NAMES": "light"}).start()
    with server.client() as client:
        yield client
    server.stop()


def create(http, **payload) -> tuple[str, dict]:
    r = http.post("/v1/responses", json={**ASK, **payload})
    assert r.status_code == 200, r.text
    return r.headers["x-cache"], Response.model_validate(r.json()).model_dump(exclude_unset=True)


def stream(http, **payload) -> tuple[str, list]:
    with http.stream("POST", "/v1/responses", json={**ASK, **payload, "stream": True}) as r:
        assert r.status_code == 200
        events = [EVENTS.validate_python(json.loads(line[6:])) for line in r.iter_lines() if line.startswith("data: ")]
        return r.headers["x-cache"], events


def shape(response: dict) -> dict:
    """What may not differ between a live answer and its replay: all but ids and times."""
    ignored = {"id", "created_at"}
    output = [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in response["output"]]
    return {**{k: v for k, v in response.items() if k not in ignored}, "output": output}


def test_a_hit_is_the_live_answer_whole_and_streamed(http):
    live_outcome, live = create(http, input="Name a fruit.")
    hit_outcome, hit = create(http, input="Name a fruit.")
    assert (live_outcome, hit_outcome) == ("MISS", "HIT")
    assert hit["id"] != live["id"] and shape(hit) == shape(live)
    assert http.get(f"/v1/responses/{hit['id']}").json()["id"] == hit["id"]  # a hit is stored too

    live_outcome, live_events = stream(http, input="Name a vegetable.")
    hit_outcome, hit_events = stream(http, input="Name a vegetable.")
    assert (live_outcome, hit_outcome) == ("MISS", "HIT")
    kinds = lambda events: [e.type for e in events if e.type != "response.output_text.delta"]  # noqa: E731
    assert kinds(hit_events) == kinds(live_events)  # only the chunking of the text may differ
    text = lambda events: "".join(e.delta for e in events if e.type == "response.output_text.delta")  # noqa: E731
    assert text(hit_events) == text(live_events) != ""
    assert shape(hit_events[-1].response.model_dump(exclude_unset=True)) == shape(live_events[-1].response.model_dump(exclude_unset=True))
    # the streamed miss was cached too: asking without streaming is a hit with the same answer
    outcome, whole = create(http, input="Name a vegetable.")
    assert outcome == "HIT" and shape(whole) == shape(live_events[-1].response.model_dump(exclude_unset=True))


def test_previous_response_id_is_resolved_before_the_key(http):
    _, first = create(http, input="Say a number.")
    outcome, chained = create(http, input="Another one.", previous_response_id=first["id"])
    assert outcome == "MISS"
    said = first["output"][0]["content"][0]["text"]
    # the same conversation written out in full is the same request
    outcome, explicit = create(http, input=[
        {"role": "user", "content": "Say a number."},
        {"role": "assistant", "content": said},
        {"role": "user", "content": "Another one."},
    ])
    assert outcome == "HIT" and explicit["output"][0]["content"] == chained["output"][0]["content"]
    # the same new input continuing another conversation is another request
    _, other = create(http, input="Say a letter.")
    outcome, _ = create(http, input="Another one.", previous_response_id=other["id"])
    assert outcome == "MISS"
    # echo fields are not keyed: they come from the request that is answered
    outcome, labelled = create(http, input="Say a number.", metadata={"who": "me"}, store=False)
    assert outcome == "HIT" and labelled["metadata"] == {"who": "me"} and labelled["store"] is False
    outcome, _ = create(http, input="Say a number.", instructions="Be brief.")
    assert outcome == "MISS"  # instructions reach the model
