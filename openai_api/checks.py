"""System checks (`manage.py check`) for the operations settings: shutdown and logs."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

LOG_FORMATS = ("plain", "json")


@register()
def operations_settings(app_configs=None, **kwargs):
    errors = []
    if settings.LOG_FORMAT not in LOG_FORMATS:
        errors.append(Error(f"LOG_FORMAT={settings.LOG_FORMAT!r} is not one of {', '.join(LOG_FORMATS)}.", id="openai_api.E001"))
    for name in ("AUTO_SHUTDOWN_MINUTES", "SHUTDOWN_GRACE_SECONDS"):
        if getattr(settings, name) < 0:
            errors.append(Error(f"{name} must be 0 or more.", id="openai_api.E002"))
    return errors


@register()
def responses_settings(app_configs=None, **kwargs):
    """The Responses API: a stored response must live long enough to be continued."""
    if settings.RESPONSES_RETENTION_DAYS <= 0:
        return [Error("RESPONSES_RETENTION_DAYS must be more than 0 (send store: false not to store).", id="openai_api.E101")]
    return []
