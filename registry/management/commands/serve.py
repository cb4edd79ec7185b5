"""`manage.py serve`: run the ASGI app under uvicorn on HOST:PORT with LOG_LEVEL.

A database that was never migrated (or is behind) is migrated first, so `serve` on a fresh
checkout works; the old public SECRET_KEY is refused on a reachable address.
"""

import logging

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from llmservice.secret import OLD_DEFAULT_SECRET_KEY
from registry.checks import is_loopback

logger = logging.getLogger("registry.serve")

PUBLIC_SECRET_REFUSED = (
    "SECRET_KEY is the public default from an old .env.example: refusing to serve on {host}, which other "
    "machines can reach. Remove SECRET_KEY from .env (a random key is generated into SECRET_KEY_FILE) or set your own."
)
PUBLIC_SECRET_WARNING = (
    "SECRET_KEY is the public default from an old .env.example; anyone can compute the internal token. "
    "Remove it from .env (a random key is then generated) before serving beyond this machine."
)

# uvicorn's own limit on waiting for connections, after our drain (llmservice/lifecycle.py) has
# had its SHUTDOWN_GRACE_SECONDS and stopped what was left: a backstop, not the policy.
UVICORN_EXTRA_SECONDS = 15


class Command(BaseCommand):
    help = "Serve the OpenAI-compatible API, the admin and the dashboard with uvicorn."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--fd", type=int, default=None, help="Serve on this inherited socket (systemd socket activation: 3).")

    def handle(self, *args, host, port, fd, **options):
        if settings.SECRET_KEY == OLD_DEFAULT_SECRET_KEY:
            if not is_loopback(host):
                raise CommandError(PUBLIC_SECRET_REFUSED.format(host=host))
            logger.warning("%s", PUBLIC_SECRET_WARNING)
        migrate_if_needed()
        uvicorn.run(
            "llmservice.asgi:application",
            host=host,
            port=port,
            fd=fd,
            log_level=settings.LOG_LEVEL.lower(),
            log_config=None,  # Django's LOGGING already covers uvicorn's loggers (LOG_FORMAT)
            access_log=False,  # our access line (openai_api/access_log.py) replaces uvicorn's
            # One process owns the models: several workers would each load their own copy.
            workers=1,
            lifespan="on",  # graceful drain and auto-shutdown (llmservice/lifecycle.py)
            timeout_graceful_shutdown=int(settings.SHUTDOWN_GRACE_SECONDS) + UVICORN_EXTRA_SECONDS,
        )


def migrate_if_needed() -> None:
    """Apply pending migrations, saying so: a never-migrated database would otherwise serve 500s."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return
    state = "has never been migrated" if not executor.loader.applied_migrations else "is behind the code"
    logger.warning("The database %s: applying %d migrations before serving", state, len(plan))
    call_command("migrate", interactive=False, verbosity=0)
    logger.info("Database migrated")
