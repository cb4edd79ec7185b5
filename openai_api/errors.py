"""The one error envelope: {"error": {"message", "type", "param", "code"}}, built here only.

https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

import json
import logging

from django.http import HttpResponse

from llmservice.errors import InternalError, InvalidRequest, PayloadTooLarge, ServiceError

logger = logging.getLogger(__name__)

UNRECOGNIZED_ARGUMENT = "Unrecognized request argument supplied: {param}"
MISSING_PARAMETER = "Missing required parameter: '{param}'."
INVALID_PARAMETER = "Invalid '{param}': {reason}."
EMPTY_BODY = "The request body is empty; expected a JSON object."
INVALID_BODY = "The request body is not a JSON object: {reason}."
BODY_TOO_LARGE = "The request body is larger than this server accepts ({limit} bytes; MAX_REQUEST_BODY_BYTES)."
INTERNAL = "The server had an error while processing your request; see the server log."

# pydantic error type -> OpenAI error code
_CODES = {"missing": "missing_required_parameter", "extra_forbidden": "unknown_parameter"}
# pydantic puts union members in error locations ("str", "list[int]", "TextPart", or a
# discriminator value such as a message role); they are not parameters a client sent.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}
_DISCRIMINATOR_VALUES = {
    "system", "developer", "user", "assistant", "tool",
    "text", "image_url", "input_audio", "file", "refusal",
}


def param_path(loc: tuple | list) -> str | None:
    """The client's name for an error location: `messages.0.content`, `temperature`."""
    parts: list[str] = []
    after_index = False
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(str(part))
            after_index = True
            continue
        tag = (
            "[" in part
            or part in _TYPE_TAGS
            or part[:1].isupper()
            or part.startswith("function-")
            or (after_index and part in _DISCRIMINATOR_VALUES and i + 1 < len(loc))
        )
        after_index = False
        if not tag:
            parts.append(part)
    return ".".join(parts) or None


def error_body(exc: ServiceError) -> dict:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}


def error_response(exc: ServiceError) -> HttpResponse:
    response = HttpResponse(json.dumps(error_body(exc)), status=exc.status, content_type="application/json")
    for name, value in getattr(exc, "headers", {}).items():  # Retry-After of a 429
        response[name] = value
    return response


def from_validation_errors(errors: list[dict]) -> ServiceError:
    """The most specific pydantic error as an OpenAI 400 naming the parameter (ninja sends 422).

    With unions pydantic reports one error per member; the deepest location is the one that
    says what is actually wrong."""
    error = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = list(error.get("loc", ()))
    if loc[:1] == ["body"]:
        loc = loc[2:]  # ("body", <argument name>, field, ...)
    param = param_path(loc)
    kind = error.get("type", "")
    if param is None and kind == "missing":
        message = EMPTY_BODY
    elif kind == "extra_forbidden":
        message = UNRECOGNIZED_ARGUMENT.format(param=param)
    elif kind == "missing":
        message = MISSING_PARAMETER.format(param=param)
    elif param is None:
        message = INVALID_BODY.format(reason=error.get("msg", "invalid"))
    else:
        message = INVALID_PARAMETER.format(param=param, reason=error.get("msg", "invalid value").rstrip("."))
    code = _CODES.get(kind, "invalid_type" if kind.endswith("_type") else "invalid_value")
    return InvalidRequest(message, param=param, code=code)


def from_status(status: int, message: str) -> ServiceError:
    """A plain HTTP error (bad JSON, 404 route, 405 method) in the envelope."""
    if status >= 500:
        return InternalError(INTERNAL)
    error = InvalidRequest(message, code={404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request"))
    error.status = status
    return error


def install_error_handlers(api) -> None:
    """Make every error a django-ninja API raises come out as the envelope (both /v1 and /internal)."""
    from django.conf import settings
    from django.core.exceptions import RequestDataTooBig
    from django.http import Http404
    from ninja.errors import HttpError, ValidationError

    @api.exception_handler(ServiceError)
    def _service_error(request, exc: ServiceError):
        return error_response(exc)

    @api.exception_handler(ValidationError)
    def _validation_error(request, exc: ValidationError):
        return error_response(from_validation_errors(exc.errors))

    @api.exception_handler(HttpError)
    def _http_error(request, exc: HttpError):
        if isinstance(exc.__cause__, ServiceError):  # our JSON parser's own words (openai_api/parser.py)
            return error_response(exc.__cause__)
        message = str(exc)
        if message.startswith("Cannot parse request body"):
            message = "We could not parse the JSON body of your request: it is not valid JSON."
        return error_response(from_status(exc.status_code, message))

    @api.exception_handler(Http404)
    def _not_found(request, exc: Http404):
        return error_response(from_status(404, f"Not found: {request.method} {request.path}"))

    @api.exception_handler(RequestDataTooBig)
    def _too_big(request, exc: RequestDataTooBig):  # the ASGI guard refuses these first (llmservice/guards.py)
        return error_response(PayloadTooLarge(BODY_TOO_LARGE.format(limit=settings.MAX_REQUEST_BODY_BYTES)))

    @api.exception_handler(Exception)
    def _unexpected(request, exc: Exception):
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return error_response(InternalError(INTERNAL))
