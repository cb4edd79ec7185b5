"""ASGI entry point: `uvicorn llmservice.asgi:application` (or `python manage.py serve`).

HTTP goes to Django; websockets (the live status page) to Channels, with the session user.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

django_application = get_asgi_application()

from llmservice.startup import prepare_outside_event_loop  # noqa: E402
from openai_api.consumers import StatusConsumer  # noqa: E402

prepare_outside_event_loop()

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/status/", StatusConsumer.as_asgi())]))
        ),
    }
)
