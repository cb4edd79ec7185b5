"""ASGI entry point: `uvicorn llmservice.asgi:application` (or `python manage.py serve`).

HTTP goes to Django; websockets (the live status page) to Channels, with the session user.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

django_application = get_asgi_application()

from openai_api.handler import APIHandler  # noqa: E402  (Django's handler, lean: only API_MIDDLEWARE, no thread hops)

api_application = APIHandler()


async def route_http(scope, receive, send):
    """API paths through the lean handler; the admin and status page through the full one."""
    lean = scope["path"].startswith(settings.API_PATH_PREFIXES)
    await (api_application if lean else django_application)(scope, receive, send)


from llmservice.guards import guarded  # noqa: E402

# Host, body size and Content-Type are checked before Django reads anything (llmservice/guards.py).
http_application = guarded(route_http, api_path_prefixes=settings.API_PATH_PREFIXES)


from llmservice.lifecycle import lifespan_application  # noqa: E402
from llmservice.startup import prepare_outside_event_loop  # noqa: E402
from openai_api.access_log import AccessMiddleware  # noqa: E402
from openai_api.consumers import StatusConsumer  # noqa: E402

prepare_outside_event_loop()

application = ProtocolTypeRouter(
    {
        # Outermost: request ids, the access log and metrics (openai_api/access_log.py).
        "http": AccessMiddleware(http_application),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/status/", StatusConsumer.as_asgi())]))
        ),
        # Graceful shutdown and auto-shutdown (llmservice/lifecycle.py).
        "lifespan": lifespan_application,
    }
)
