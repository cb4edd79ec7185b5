"""The django-ninja API mounted at /v1: routers, and every error mapped to the one envelope."""

from __future__ import annotations

import logging

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError

from llmservice.errors import InternalError, ServiceError

from .errors import INTERNAL, error_response, from_status, from_validation_errors
from .routers.chat import router as chat_router
from .routers.completions import router as completions_router
from .routers.embeddings import router as embeddings_router
from .routers.health import health
from .routers.models import router as models_router
from .routers.rerank import router as rerank_router

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="llmservice",
    version="1.0",
    description="OpenAI-compatible API over local models, addressed by tier name.",
    docs_url="/docs",
)
api.add_router("", chat_router)
api.add_router("", completions_router)
api.add_router("", models_router)
api.add_router("", embeddings_router)
api.add_router("", rerank_router)

__all__ = ["api", "health"]


@api.exception_handler(ServiceError)
def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(exc)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(from_validation_errors(exc.errors))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if message.startswith("Cannot parse request body"):
        message = "We could not parse the JSON body of your request: it is not valid JSON."
    return error_response(from_status(exc.status_code, message))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(from_status(404, f"Not found: {request.method} {request.path}"))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled error on %s %s", request.method, request.path)
    return error_response(InternalError(INTERNAL))
