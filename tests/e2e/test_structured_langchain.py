"""Structured output and tools through LangChain's ChatOpenAI and a LangGraph ReAct agent,
against a real server and SmolLM2. Structure and schema validity are asserted, not content."""

from __future__ import annotations

import json
import warnings

import jsonschema
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.e2e

langchain_openai = pytest.importorskip("langchain_openai")
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(max_length=30, description="The person's name")
    age: int = Field(description="Age in years")


PERSON_SCHEMA = {
    "title": "Person",
    "description": "A person mentioned in the text.",
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"It is sunny and 21 C in {city}."


WEATHER_ARGS = get_weather.tool_call_schema.model_json_schema()


@pytest.fixture(scope="module")
def llm(llm_server):
    return langchain_openai.ChatOpenAI(
        base_url=llm_server.base_url + "/v1", api_key="unused", model="light", temperature=0, max_tokens=200, max_retries=0, timeout=300
    )


QUESTION = "Ann is 31 years old and lives in Paris."


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_pydantic(llm, method):
    result = llm.with_structured_output(Person, method=method).invoke(QUESTION)
    assert isinstance(result, Person)


def test_with_structured_output_json_mode(llm):
    # json_mode sends no schema (LangChain's design), so a dict schema is parsed as plain JSON.
    prompt = f'{QUESTION} Reply in JSON with the keys "name" and "age".'
    result = llm.with_structured_output(PERSON_SCHEMA, method="json_mode").invoke(prompt)
    assert isinstance(result, dict)


def test_bind_tools_with_tool_choice(llm):
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert isinstance(message, AIMessage) and message.tool_calls
    for call in message.tool_calls:
        assert call["name"] == "get_weather" and call["id"]
        jsonschema.validate(call["args"], WEATHER_ARGS)


def test_stream_with_tools_merges_into_one_call(llm):
    bound = llm.bind_tools([get_weather], tool_choice="required", parallel_tool_calls=False)
    merged = None
    for chunk in bound.stream("What is the weather in Paris?"):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert len(merged.tool_calls) == 1
    call = merged.tool_calls[0]
    assert call["name"] == "get_weather"  # not "get_weatherget_weather"
    jsonschema.validate(call["args"], WEATHER_ARGS)
    assert json.loads(merged.tool_call_chunks[0]["args"]) == call["args"]


def test_langgraph_react_agent_calls_a_tool_and_finishes(llm):
    from langgraph.prebuilt import create_react_agent

    def model(state, runtime):
        # A 135M model rarely volunteers a call, so the first turn forces one and the turn after
        # the tool result forbids another: what is tested is the server honouring tool_choice
        # inside a real agent loop, not the model's judgement.
        after_tool = isinstance(state["messages"][-1], ToolMessage)
        return llm.bind_tools([get_weather], tool_choice="none" if after_tool else "required", parallel_tool_calls=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent is deprecated in favour of langchain.agents
        agent = create_react_agent(model, [get_weather], prompt="You are a weather assistant.")
    result = agent.invoke({"messages": [("user", "What is the weather in Paris?")]}, {"recursion_limit": 6})
    messages = result["messages"]
    calls = [m for m in messages if isinstance(m, AIMessage) and m.tool_calls]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(calls) == 1 and calls[0].tool_calls[0]["name"] == "get_weather"
    assert len(results) == 1 and results[0].content.startswith("It is sunny") and results[0].tool_call_id == calls[0].tool_calls[0]["id"]
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content
