"""`response_format`, `tools`, `tool_choice` and `parallel_tool_calls`, and their conversion to
the neutral constraint the backend enforces.

https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format
https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools
https://platform.openai.com/docs/guides/structured-outputs
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from inference.grammar import schema_check
from inference.params import JsonOutput, ToolSpec, ToolUse
from llmservice.errors import InvalidRequest, UnsupportedParameter

from .common import StrictModel

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
TOOL_CHOICE_WITHOUT_TOOLS = "'tool_choice' is only allowed when 'tools' are specified."
PARALLEL_WITHOUT_TOOLS = "'parallel_tool_calls' is only allowed when 'tools' are specified."
UNKNOWN_TOOL = "'tool_choice' names the function '{name}', which is not in 'tools'."
DUPLICATE_TOOL = "'tools' defines the function '{name}' more than once."
JSON_AND_TOOLS = (
    "'response_format' {kind} cannot be combined with tools the model may call; "
    "use tool_choice 'none' or leave response_format out."
)
STOP_AND_CONSTRAINT = "'stop' cannot be combined with {what}: a stop string could cut the structured output short."


# --- response_format ---------------------------------------------------------------------------
class ResponseFormatText(StrictModel):
    type: Literal["text"]


class ResponseFormatJsonObject(StrictModel):
    type: Literal["json_object"]
    # Extension (llama-cpp-python's form): a JSON schema the object must follow.
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class JsonSchemaSpec(StrictModel):
    name: str = Field(..., pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # we always enforce the schema, strict or not


class ResponseFormatJsonSchema(StrictModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    Union[ResponseFormatText, ResponseFormatJsonObject, ResponseFormatJsonSchema], Field(discriminator="type")
]


def json_output(response_format: ResponseFormat | None) -> JsonOutput | None:
    """The JSON constraint a response_format asks for; None for plain text."""
    if response_format is None or isinstance(response_format, ResponseFormatText):
        return None
    if isinstance(response_format, ResponseFormatJsonObject):
        schema = response_format.schema_
        if schema is None:
            return JsonOutput(None)
        return JsonOutput(schema_check(schema=schema, param="response_format.schema"))
    schema = response_format.json_schema.schema_
    if schema is None:  # OpenAI: no schema means any JSON object
        return JsonOutput(None)
    return JsonOutput(schema_check(schema=schema, param="response_format.json_schema.schema"))


# --- tools ---------------------------------------------------------------------------------------
class FunctionDefinition(StrictModel):
    name: str = Field(..., pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # we always enforce the parameters' schema


class FunctionTool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(StrictModel):
    name: str


class NamedToolChoice(StrictModel):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


def tool_use(
    tools: list[FunctionTool] | None, tool_choice: ToolChoice | None, parallel_tool_calls: bool | None
) -> ToolUse | None:
    """What the model may call, or None when it must answer in text (no tools, or tool_choice 'none')."""
    if not tools:
        if tool_choice is not None:
            raise InvalidRequest(TOOL_CHOICE_WITHOUT_TOOLS, param="tool_choice")
        if parallel_tool_calls is not None:
            raise InvalidRequest(PARALLEL_WITHOUT_TOOLS, param="parallel_tool_calls")
        return None
    specs, seen = [], set()
    for i, tool in enumerate(tools):
        function = tool.function
        if function.name in seen:
            raise InvalidRequest(DUPLICATE_TOOL.format(name=function.name), param=f"tools.{i}.function.name")
        seen.add(function.name)
        parameters = NO_PARAMETERS if function.parameters is None else function.parameters
        checked = schema_check(schema=parameters, param=f"tools.{i}.function.parameters")
        specs.append(ToolSpec(name=function.name, description=function.description, parameters=checked))
    choice = tool_choice or "auto"
    if choice == "none":
        return None
    parallel = parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in seen:
            raise InvalidRequest(UNKNOWN_TOOL.format(name=choice.function.name), param="tool_choice")
        return ToolUse(tools=tuple(specs), choice="required", only=choice.function.name, parallel=parallel)
    return ToolUse(tools=tuple(specs), choice=choice, parallel=parallel)


def check_combination(*, json: JsonOutput | None, tools: ToolUse | None, response_format: Any, stop: Any) -> None:
    """Refuse the combinations whose output we could not keep well-formed."""
    if json is not None and tools is not None:
        raise UnsupportedParameter(JSON_AND_TOOLS.format(kind=response_format.type), param="response_format")
    if stop and (json is not None or tools is not None):
        what = f"response_format {response_format.type}" if json is not None else "tools"
        raise UnsupportedParameter(STOP_AND_CONSTRAINT.format(what=what), param="stop")
