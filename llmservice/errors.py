"""The typed errors every app raises; `openai_api` turns them into one OpenAI error envelope.

https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error a client should see: carries its HTTP status, OpenAI type, code and param."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ServiceError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class UnsupportedParameter(InvalidRequest):
    """A parameter OpenAI documents that this server cannot honour: refused, never ignored."""

    code = "unsupported_parameter"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class ModelNotFound(ServiceError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class WrongModelKind(InvalidRequest):
    """A tier asked for something its kind does not do (a chat tier asked for embeddings)."""

    code = "model_not_supported"


class ModelUnavailable(ServiceError):
    """The tier exists but its model cannot be loaded or has been unloaded mid-request."""

    status = 503
    type = "server_error"
    code = "model_unavailable"


class InternalError(ServiceError):
    status = 500
    type = "server_error"
    code = "internal_error"
