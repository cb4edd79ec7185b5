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


# --- Hardening: access, admission and limits (issue 11) -------------------------------------------
class Unauthorized(ServiceError):
    """No API key, or one that is wrong, revoked or expired."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(ServiceError):
    """A valid API key asking for a tier outside its scope."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class PayloadTooLarge(ServiceError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(ServiceError):
    """Too many requests: sent with `Retry-After` (whole seconds, at least 1)."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, param: str | None = None, type: str | None = None):
        super().__init__(message, param=param)
        self.retry_after = max(1, int(-(-retry_after // 1)))
        if type is not None:
            self.type = type

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class SharedStoreUnavailable(ServiceError):
    """The Redis at REDIS_URL, which counts per-key rate limits across instances, is unreachable:
    a limit that cannot be counted is not waived."""

    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class DeadlineExceeded(ServiceError):
    """The request's deadline (REQUEST_TIMEOUT_SECONDS) passed before it produced anything."""

    status = 504
    type = "server_error"
    code = "timeout"


class ServerShuttingDown(ServiceError):
    """The server is draining (SIGTERM or auto-shutdown): no new work, or work stopped after the grace period."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"


# --- The Responses API (issue 14) -----------------------------------------------------------------
class ResponseNotFound(ServiceError):
    """A stored response that does not exist, has expired, was deleted or belongs to another key."""

    status = 404
    type = "invalid_request_error"
    code = "response_not_found"


# --- Remote tiers (issue 16): the upstream's failures, as the client sees them -------------------
class UpstreamFailed(ServiceError):
    """The upstream of a remote tier failed (5xx, broken connection) or is marked down."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(ServiceError):
    """The upstream of a remote tier sent nothing within its read timeout."""

    status = 504
    type = "server_error"
    code = "upstream_timeout"


class UpstreamRejected(ServiceError):
    """The upstream's own 4xx (the client's mistake), passed through with its status and envelope."""

    def __init__(self, message: str, *, status: int, type: str | None, param: str | None, code: str | None):
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = type or "invalid_request_error"
