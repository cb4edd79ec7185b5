"""The error envelope as the OpenAPI document declares it (built in openai_api/errors.py).

https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """Every error this API answers: {"error": {"message", "type", "param", "code"}}."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


# 400 invalid, 401 no/wrong API key, 403 tier outside the key's scope, 404 unknown model,
# 413 body too large, 415 not JSON, 429 rate limit or queue full, 503 model can't load, 504 deadline.
GENERATION_ERRORS = (400, 401, 403, 404, 413, 415, 429, 503, 504)
READ_ERRORS = (400, 401, 403, 404, 429)


def error_responses(*statuses: int) -> dict[int, type[ErrorEnvelope]]:
    """django-ninja `response=` entries declaring these statuses as the envelope."""
    return {status: ErrorEnvelope for status in statuses}
