"""vLLM's structured-output extensions, as vLLM clients send them (`extra_body`), on chat and
completions, against a real server and SmolLM2."""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PLATE = r"[A-Z]{2}-[0-9]{3}-[A-Z]{2}"
LARK = 'start: "The answer is " NUMBER "."\nNUMBER: /[1-9][0-9]?/'
GBNF = 'root ::= "The answer is " [1-9] [0-9]? "."'
ANSWER = re.compile(r"The answer is [1-9][0-9]?\.")


def person(text: str) -> bool:
    jsonschema.validate(json.loads(text), PERSON)
    return True


def plate(text: str) -> bool:
    return re.fullmatch(PLATE, text) is not None


def answer(text: str) -> bool:
    return ANSWER.fullmatch(text) is not None


# (extra_body, a check of the output text)
CASES = {
    "structured_outputs.json": ({"structured_outputs": {"json": PERSON}}, person),
    "structured_outputs.json_object": (
        {"structured_outputs": {"json_object": True}, "messages": [{"role": "user", "content": 'Reply {"ok": true} in JSON.'}]},
        lambda t: isinstance(json.loads(t), dict),
    ),
    "structured_outputs.regex": ({"structured_outputs": {"regex": PLATE}}, plate),
    "structured_outputs.choice": ({"structured_outputs": {"choice": ["red", "green", "blue"]}}, lambda t: t in ("red", "green", "blue")),
    "structured_outputs.grammar (Lark)": ({"structured_outputs": {"grammar": LARK}}, answer),
    "structured_outputs.grammar (GBNF)": ({"structured_outputs": {"grammar": GBNF}}, answer),
    "guided_json": ({"guided_json": PERSON}, person),
    "guided_json (as a string)": ({"guided_json": json.dumps(PERSON)}, person),
    "guided_regex": ({"guided_regex": PLATE}, plate),
    "guided_choice": ({"guided_choice": ["yes", "no"]}, lambda t: t in ("yes", "no")),
    "guided_grammar": ({"guided_grammar": GBNF}, answer),
}


@pytest.fixture(scope="module")
def client(llm_server):
    return OpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.mark.parametrize("case", list(CASES))
def test_chat_extensions(client, case):
    extra, check = CASES[case]
    messages = extra.get("messages", [{"role": "user", "content": "Answer."}])
    extra = {k: v for k, v in extra.items() if k != "messages"}
    reply = client.chat.completions.create(model="light", messages=messages, temperature=0, max_tokens=80, extra_body=extra)
    assert reply.choices[0].finish_reason == "stop"
    text = reply.choices[0].message.content
    assert check(text), text


@pytest.mark.parametrize("case", ["structured_outputs.regex", "guided_choice", "guided_json"])
def test_completions_extensions_streamed(client, case):
    extra, check = CASES[case]
    stream = client.completions.create(model="light", prompt="Answer:", temperature=0, max_tokens=80, stream=True, extra_body=extra)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert check(text), text


@pytest.mark.parametrize(
    "body, param",
    [
        ({"structured_outputs": {"regex": "a+", "choice": ["a"]}}, "structured_outputs.choice"),
        ({"guided_regex": "a+", "guided_json": PERSON}, "guided_regex"),  # named in a fixed order
        ({"response_format": {"type": "json_object"}, "guided_regex": "a+"}, "guided_regex"),
        ({"structured_outputs": {"json": PERSON}, "guided_choice": ["a"]}, "guided_choice"),
        ({"guided_choice": ["a"], "stop": ["x"]}, "stop"),
        ({"guided_choice": []}, "guided_choice"),
        ({"guided_json": "{not json"}, "guided_json"),
        ({"guided_regex": "a("}, "guided_regex"),
        ({"structured_outputs": {"grammar": "start: undefined_rule"}}, "structured_outputs.grammar"),
        ({"structured_outputs": {"grammar": "root ::= ("}}, "structured_outputs.grammar"),
        ({"structured_outputs": {"whitespace_pattern": " "}}, "structured_outputs.whitespace_pattern"),
    ],
)
def test_conflicting_or_broken_extensions_are_400s_naming_the_param(llm_server, body, param):
    response = httpx.post(
        llm_server.base_url + "/v1/chat/completions",
        json={"model": "light", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, **body}, timeout=120,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and set(error) == {"message", "type", "param", "code"}


def test_tools_and_an_extension_are_refused_together(llm_server):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    body = {"model": "light", "messages": [{"role": "user", "content": "x"}], "tools": [tool], "guided_regex": "a+"}
    response = httpx.post(llm_server.base_url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 400 and response.json()["error"]["param"] == "guided_regex"
