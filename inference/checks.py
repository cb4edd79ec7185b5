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


@register()
def backend_registry(app_configs=None, **kwargs):
    """inference.E003: every INFERENCE_BACKENDS entry imports and implements the engine contract."""
    from pydantic import BaseModel

    from llmservice.errors import ModelUnavailable

    from .backends import backend_engines, backend_names

    errors = []
    for name in backend_names():
        try:
            engines = backend_engines(name)
        except ModelUnavailable as exc:
            errors.append(Error(exc.message, hint="Fix settings.INFERENCE_BACKENDS.", id="inference.E003"))
            continue
        for engine in engines:
            if not engine.kinds or not (isinstance(engine.options, type) and issubclass(engine.options, BaseModel)):
                errors.append(
                    Error(f"Backend '{name}': {engine.__name__} must declare its kinds and a pydantic options model.",
                          id="inference.E003")
                )
    return errors


@register()
def keep_alive_settings(app_configs=None, **kwargs):
    """inference.E004: KEEP_ALIVE and KEEP_ALIVE_MAX are durations; MAX_LOADED_MODELS is not negative."""
    from .keep_alive import INVALID_DURATION, duration_parse

    errors = []
    for name in ("KEEP_ALIVE", "KEEP_ALIVE_MAX"):
        try:
            duration_parse(getattr(settings, name))
        except ValueError:
            errors.append(Error(f"{name}={getattr(settings, name)!r} {INVALID_DURATION}.", id="inference.E004"))
    if settings.MAX_LOADED_MODELS < 0:
        errors.append(Error("MAX_LOADED_MODELS must be 0 (no limit) or more.", id="inference.E004"))
    return errors
