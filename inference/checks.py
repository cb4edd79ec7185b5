"""System checks (`manage.py check`) for the inference settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

TOKEN_ID_POLICIES = ("cl100k_base", "model")


@register()
def embedding_settings(app_configs=None, **kwargs):
    errors = []
    if settings.EMBEDDING_TOKEN_IDS not in TOKEN_ID_POLICIES:
        errors.append(
            Error(
                f"EMBEDDING_TOKEN_IDS={settings.EMBEDDING_TOKEN_IDS!r} is not one of {', '.join(TOKEN_ID_POLICIES)}.",
                id="inference.E001",
            )
        )
    for name in ("EMBEDDING_MAX_INPUTS", "RERANK_MAX_DOCUMENTS", "BATCH_MAX_ITEMS"):
        if getattr(settings, name) < 1:
            errors.append(Error(f"{name} must be at least 1.", id="inference.E002"))
    return errors
