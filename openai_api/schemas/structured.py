"""`response_format`, `tools`, `tool_choice`, `parallel_tool_calls`, and vLLM's structured-output
extensions, turned into the one neutral constraint the backend enforces (`inference.constraints`).

No grammar is built here: schemas are checked, compiled and cached by the loaded model's
constraint compiler before the request is queued.

https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format
https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools
https://platform.openai.com/docs/guides/structured-outputs
https://docs.vllm.ai/en/latest/features/structured_outputs.html
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from inference.constraints import AnyJsonObject, Choice, Constraint, Grammar, JsonSchema, Regex, ToolCalls, ToolSpec
from llmservice.errors import InvalidRequest, UnsupportedParameter

from .common import StrictModel

NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
TOOL_CHOICE_WITHOUT_TOOLS = "'tool_choice' is only allowed when 'tools' are specified."
PARALLEL_WITHOUT_TOOLS = "'parallel_tool_calls' is only allowed when 'tools' are specified."
UNKNOWN_TOOL = "'tool_choice' names the function '{name}', which is not in 'tools'."
DUPLICATE_TOOL = "'tools' defines the function '{name}' more than once."
TWO_CONSTRAINTS = (
    "'{second}' cannot be combined with '{first}': a request takes one output constraint "
    "(response_format, tools the model may call, structured_outputs or a guided_* field)."
)
STOP_AND_CONSTRAINT = "'stop' cannot be combined with {what}: a stop string could cut the structured output short."
NOT_JSON = "'{param}' must be a JSON schema: an object, or a string holding one."
EMPTY_CHOICE = "'{param}' must list at least one non-empty string."


# --- response_format ---------------------------------------------------------------------------
class ResponseFormatText(StrictModel):
    type: Literal["text"]


class ResponseFormatJsonObject(StrictModel):
    type: Literal["json_object"]
    # Extension (llama-cpp-python's form): a JSON schema the object must follow (not strict).
    schema_: dict[str, Any] | None = Field(None, alias="schema")


class JsonSchemaSpec(StrictModel):
    name: str = Field(..., pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # true: a keyword we can't enforce is a 400; else it is relaxed


class ResponseFormatJsonSchema(StrictModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    Union[ResponseFormatText, ResponseFormatJsonObject, ResponseFormatJsonSchema], Field(discriminator="type")
]


def json_output(response_format: ResponseFormat | None) -> Constraint | None:
    """The JSON constraint a response_format asks for; None for plain text."""
    if response_format is None or isinstance(response_format, ResponseFormatText):
        return None
    if isinstance(response_format, ResponseFormatJsonObject):
        if response_format.schema_ is None:
            return AnyJsonObject(param="response_format")
        return JsonSchema(response_format.schema_, strict=False, param="response_format.schema")
    spec = response_format.json_schema
    if spec.schema_ is None:  # OpenAI: no schema means any JSON object
        return AnyJsonObject(param="response_format")
    return JsonSchema(spec.schema_, strict=bool(spec.strict), param="response_format.json_schema.schema")


# --- tools ---------------------------------------------------------------------------------------
class FunctionDefinition(StrictModel):
    name: str = Field(..., pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # true: a keyword we can't enforce is a 400; else it is relaxed


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


def tool_calls_allowed(
    tools: list[FunctionTool] | None, tool_choice: ToolChoice | None, parallel_tool_calls: bool | None
) -> ToolCalls | None:
    """What the model may call, or None when it must answer in text (no tools, or tool_choice 'none').

    A named tool_choice means exactly one call of that tool, whatever parallel_tool_calls says."""
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
        specs.append(ToolSpec(function.name, function.description, parameters, strict=bool(function.strict)))
    choice = tool_choice or "auto"
    if choice == "none":
        return None
    parallel = parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in seen:
            raise InvalidRequest(UNKNOWN_TOOL.format(name=choice.function.name), param="tool_choice")
        return ToolCalls(tools=tuple(specs), choice="required", only=choice.function.name, parallel=False)
    return ToolCalls(tools=tuple(specs), choice=choice, parallel=parallel)


# --- extensions: vLLM's structured outputs ---------------------------------------------------------
class StructuredOutputs(StrictModel):
    """vLLM's `structured_outputs`: one of json, regex, choice, grammar (Lark or GBNF), json_object."""

    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


class StructuredOutputExtensions(StrictModel):
    """Extensions, not in the OpenAI spec: vLLM's structured-output fields, so vLLM clients work
    unchanged. Each is one output constraint; a request takes at most one.
    https://docs.vllm.ai/en/latest/features/structured_outputs.html"""

    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = Field(None, description="Extension (older vLLM): a JSON schema.")
    guided_regex: str | None = Field(None, description="Extension (older vLLM): a regular expression.")
    guided_choice: list[str] | None = Field(None, description="Extension (older vLLM): one of these strings.")
    guided_grammar: str | None = Field(None, description="Extension (older vLLM): a Lark or GBNF grammar.")

    def extension_constraints(self) -> list[tuple[str, Constraint]]:
        """Every constraint the extension fields ask for, with the param that asked."""
        found: list[tuple[str, Constraint]] = []
        so = self.structured_outputs
        if so is not None:
            given = [(f"structured_outputs.{name}", value) for name, value in (
                ("json", so.json_), ("regex", so.regex), ("choice", so.choice), ("grammar", so.grammar),
                ("json_object", so.json_object or None),
            ) if value is not None]
            found.extend((param, _extension(param, value)) for param, value in given)
        for param in ("guided_json", "guided_regex", "guided_choice", "guided_grammar"):
            value = getattr(self, param)
            if value is not None:
                found.append((param, _extension(param, value)))
        return found


def _extension(param: str, value: Any) -> Constraint:
    kind = param.rsplit(".", 1)[-1].removeprefix("guided_")
    if kind == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidRequest(NOT_JSON.format(param=param), param=param) from None
        if not isinstance(value, dict):
            raise InvalidRequest(NOT_JSON.format(param=param), param=param)
        return JsonSchema(value, strict=False, param=param)
    if kind == "json_object":
        return AnyJsonObject(param=param)
    if kind == "regex":
        return Regex(value, param=param)
    if kind == "choice":
        if not value or any(not option for option in value):
            raise InvalidRequest(EMPTY_CHOICE.format(param=param), param=param)
        return Choice(tuple(value), param=param)
    return Grammar(value, syntax="gbnf" if "::=" in value else "lark", param=param)


def one_constraint(candidates: list[tuple[str, Constraint | None]], *, stop: Any) -> Constraint | None:
    """The request's output constraint; a 400 naming the param when two are given, or `stop` with one."""
    given = [(param, c) for param, c in candidates if c is not None]
    if len(given) > 1:
        (first, _), (second, _) = given[:2]
        raise UnsupportedParameter(TWO_CONSTRAINTS.format(first=first, second=second), param=second)
    if not given:
        return None
    param, constraint = given[0]
    if stop:
        raise UnsupportedParameter(STOP_AND_CONSTRAINT.format(what=f"'{param}'"), param="stop")
    return constraint
