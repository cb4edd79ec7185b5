"""/v1/responses from the client libraries that use it by default: the OpenAI Agents SDK
(`Agent(model="light")` + `Runner`, tracing off) and LangChain's `ChatOpenAI(use_responses_api=True)`,
against a real server and SmolLM2."""

from __future__ import annotations

import asyncio

import pytest
from agents import Agent, ModelSettings, Runner, function_tool, set_default_openai_client, set_tracing_disabled
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

pytestmark = pytest.mark.e2e


@pytest.fixture
def run_on(llm_server):
    """Run a coroutine on a new event loop with the Agents SDK's default client on our server
    (an async client belongs to one loop, so each run makes its own)."""
    set_tracing_disabled(True)

    def run(make):
        async def main():
            client = AsyncOpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)
            set_default_openai_client(client, use_for_tracing=False)
            async with client:
                return await make()

        return asyncio.run(main())

    return run


def weather_agent(asked: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        asked.append(city)
        return f"It is sunny in {city}."

    return Agent(
        name="weather", instructions="Use the weather tool.", model="light", tools=[get_weather],
        tool_use_behavior="stop_on_first_tool",  # SmolLM2 would call it again and again in "auto"
        model_settings=ModelSettings(temperature=0, tool_choice="required", max_tokens=150),
    )


def test_agents_sdk_runner_calls_a_function_tool(run_on):
    asked: list[str] = []
    result = run_on(lambda: Runner.run(weather_agent(asked), "What is the weather in Paris?", max_turns=3))
    assert len(asked) == 1 and asked[0]
    assert result.final_output == f"It is sunny in {asked[0]}."
    (call,) = [item for item in result.new_items if item.type == "tool_call_item"]
    assert call.raw_item.name == "get_weather" and call.raw_item.call_id.startswith("call_")


def test_agents_sdk_streamed_run(run_on):
    asked: list[str] = []

    async def run():
        streamed = Runner.run_streamed(weather_agent(asked), "Weather in Rome?", max_turns=3)
        kinds = [event.type async for event in streamed.stream_events()]
        return streamed, kinds

    streamed, kinds = run_on(run)
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert len(asked) == 1 and streamed.final_output == f"It is sunny in {asked[0]}."


def test_agents_sdk_text_answer(run_on):
    agent = Agent(name="poet", instructions="Answer in one short sentence.", model="light",
                  model_settings=ModelSettings(temperature=0, max_tokens=80))
    result = run_on(lambda: Runner.run(agent, "Describe the sea.", max_turns=1))
    assert isinstance(result.final_output, str) and result.final_output
    assert result.raw_responses[0].usage.output_tokens <= 80


@pytest.fixture(scope="module")
def langchain_model(llm_server):
    return ChatOpenAI(model="light", base_url=llm_server.base_url + "/v1", api_key="unused", use_responses_api=True,
                      temperature=0, max_tokens=40, max_retries=0, timeout=300)


def test_langchain_invoke_and_stream(langchain_model):
    message = langchain_model.invoke("Name a colour.")
    assert message.text and message.response_metadata["id"].startswith("resp_")
    assert message.usage_metadata["output_tokens"] <= 40
    chunks = list(langchain_model.stream("Name a colour."))
    assert "".join(c.text for c in chunks) and chunks[-1].usage_metadata["output_tokens"] <= 40


def test_langchain_tool_round_trip(langchain_model):
    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return "sunny"

    question = HumanMessage("What is the weather in Paris?")
    called = langchain_model.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    (call,) = called.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)
    answer = langchain_model.bind_tools([get_weather]).invoke(
        [question, called, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])])
    assert isinstance(answer, AIMessage) and (answer.text or answer.tool_calls)
