"""What the server does once per process before serving: seed tiers, announce lazy loading."""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError

logger = logging.getLogger(__name__)


def prepare() -> None:
    """Seed missing tiers from the environment and log how many are ready for lazy loading."""
    from registry.selectors import tier_list
    from registry.services import tier_seed_from_env

    try:
        tier_seed_from_env()
        count = len(tier_list())
    except DatabaseError as exc:
        logger.error("The database is not ready (%s): run `python manage.py migrate`.", exc)
        return
    logger.info("Lazy loading enabled for %d model configurations", count)
    _warn_public_secret()


def _warn_public_secret() -> None:
    """Under plain uvicorn the bind address is unknown here: warn (`manage.py serve` refuses off loopback)."""
    from django.conf import settings

    from llmservice.secret import OLD_DEFAULT_SECRET_KEY

    if settings.SECRET_KEY == OLD_DEFAULT_SECRET_KEY:
        logger.warning("SECRET_KEY is the public default of an old .env.example: remove it from .env (a random key is generated).")


def prepare_outside_event_loop() -> None:
    """Run `prepare` on a plain thread: uvicorn imports the app inside its running event loop,
    where Django refuses synchronous database access."""
    thread = threading.Thread(target=prepare, name="llmservice-startup")
    thread.start()
    thread.join()
