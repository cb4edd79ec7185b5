"""ASGI entry point: `uvicorn llmservice.asgi:application` (or `python manage.py serve`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmservice.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from llmservice.startup import prepare_outside_event_loop  # noqa: E402

prepare_outside_event_loop()

application = ProtocolTypeRouter({"http": django_application})
