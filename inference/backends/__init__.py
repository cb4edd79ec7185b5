"""Backends behind one small interface, chosen by name from the registry."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from llmservice.errors import ModelUnavailable

from .base import Backend

__all__ = ["Backend", "backend_class", "backend_names"]


def backend_names() -> list[str]:
    return list(settings.INFERENCE_BACKENDS)


def backend_class(name: str) -> type[Backend]:
    """The class registered for `name` in settings.INFERENCE_BACKENDS."""
    try:
        path = settings.INFERENCE_BACKENDS[name]
    except KeyError:
        raise ModelUnavailable(f"Unknown backend '{name}'.") from None
    try:
        return import_string(path)
    except ImportError as exc:
        raise ModelUnavailable(f"Backend '{name}' is not installed: {exc}.") from exc
