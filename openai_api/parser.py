"""The API's JSON body parser: strict JSON (RFC 8259), valid Unicode, bounded nesting.

Python's `json` accepts what the rest of the stack can't handle: `NaN`/`Infinity`, lone UTF-16
surrogates (`"\\ud800"`, which fail on the first `.encode("utf-8")` in a tokenizer) and nesting
deep enough to exhaust the recursion limit of whatever walks the value next. Each becomes a 400
naming the place, raised here once for every endpoint instead of a 500 somewhere downstream.
https://www.rfc-editor.org/rfc/rfc8259
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.parser import Parser

from llmservice.errors import InvalidRequest

NOT_UTF8 = "The request body is not valid UTF-8 text."
NOT_JSON_CONSTANT = "The request body is not valid JSON: '{name}' is not a JSON value."
TOO_DEEP = "The request body nests JSON more than {limit} levels deep (MAX_JSON_DEPTH)."
LONE_SURROGATE = "Invalid '{param}': the text contains a lone UTF-16 surrogate, which is not valid Unicode."
LONE_SURROGATE_KEY = "Invalid '{param}': a key contains a lone UTF-16 surrogate, which is not valid Unicode."

# A surrogate can only arrive as a \\uD800-\\uDFFF escape (the body is decoded as strict UTF-8),
# so bodies without one skip the string check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_constant(name: str) -> Any:
    raise InvalidRequest(NOT_JSON_CONSTANT.format(name=name))


def parse_json_body(body: bytes) -> Any:
    """The body as a JSON value, or an InvalidRequest saying what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(NOT_UTF8) from None
    limit = settings.MAX_JSON_DEPTH
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidRequest(TOO_DEEP.format(limit=limit)) from None
    check_value(value, depth_limit=limit, strings=bool(_SURROGATE_ESCAPE.search(text)))
    return value


def check_value(value: Any, *, depth_limit: int, strings: bool = True) -> None:
    """Refuse nesting deeper than `depth_limit` and (with `strings`) lone surrogates, naming
    the first offending place. Iterative: the value may be as deep as the parser allowed."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > depth_limit:
            raise InvalidRequest(TOO_DEEP.format(limit=depth_limit))
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            kinds = set(map(type, node))
            if not strings and not kinds & {dict, list}:
                continue  # a flat list of scalars: nothing to look at (fast path for big arrays)
            items = enumerate(node)
        else:
            continue
        for key, item in items:
            if strings and isinstance(key, str) and _SURROGATE.search(key):
                raise InvalidRequest(LONE_SURROGATE_KEY.format(param=_param((*path, key))), param=_param(path))
            if isinstance(item, (dict, list)):
                stack.append((item, (*path, key), depth + 1))
            elif strings and isinstance(item, str) and _SURROGATE.search(item):
                param = _param((*path, key))
                raise InvalidRequest(LONE_SURROGATE.format(param=param), param=param)


def _param(path: tuple) -> str | None:
    return ".".join(str(p) for p in path) or None


class StrictJSONParser(Parser):
    """django-ninja's parser with the checks above (installed on /v1 and /internal)."""

    def parse_body(self, request: HttpRequest) -> Any:
        return parse_json_body(request.body)
