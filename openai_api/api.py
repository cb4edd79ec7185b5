"""The django-ninja API mounted at /v1: routers, and every error mapped to the one envelope."""

from __future__ import annotations

from ninja import NinjaAPI
from pydantic import BaseModel

from .access import ApiKeyAuth
from .errors import install_error_handlers
from .parser import StrictJSONParser
from .routers.chat import router as chat_router
from .routers.completions import router as completions_router
from .routers.embeddings import router as embeddings_router
from .routers.health import health
from .routers.models import router as models_router
from .routers.rerank import router as rerank_router
from .routers.responses import router as responses_router
from .schemas.objects import ChatCompletionChunk
from .schemas.response_objects import STREAM_EVENTS

# Stream chunks are no operation's JSON response, so ninja would leave them out of the document.
STREAMED: tuple[type[BaseModel], ...] = (ChatCompletionChunk, *STREAM_EVENTS)


class ServiceAPI(NinjaAPI):
    """The API whose OpenAPI document also holds the stream chunks' schemas."""

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        components = schema["components"].setdefault("schemas", {})
        for model in STREAMED:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in definition.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components.setdefault(model.__name__, definition)
        return schema


api = ServiceAPI(
    title="llmservice",
    version="1.0",
    description="OpenAI-compatible API over local models, addressed by tier name.",
    docs_url="/docs",
    parser=StrictJSONParser(),
    auth=ApiKeyAuth(),  # API keys when API_KEYS_REQUIRED is on; anonymous otherwise
)
api.add_router("", chat_router)
api.add_router("", completions_router)
api.add_router("", models_router)
api.add_router("", embeddings_router)
api.add_router("", rerank_router)
api.add_router("", responses_router)

__all__ = ["api", "health"]

install_error_handlers(api)
