"""`manage.py serve`: run the ASGI app under uvicorn on HOST:PORT with LOG_LEVEL."""

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the OpenAI-compatible API, the admin and the dashboard with uvicorn."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)

    def handle(self, *args, host, port, **options):
        uvicorn.run(
            "llmservice.asgi:application",
            host=host,
            port=port,
            log_level=settings.LOG_LEVEL.lower(),
            # One process owns the models: several workers would each load their own copy.
            workers=1,
            lifespan="off",  # Django has no lifespan handlers
        )
