"""What a failed model load tells the outside, and when the next attempt may happen.

Clients, `/health`, the admin and `manage.py status` see the tier and its model file's name,
never a server path or an internal exception; the details go to the server log.
"""

from __future__ import annotations

import os
import re
import time

from django.conf import settings

from llmservice.errors import ServiceError

from .params import ModelSpec

LOAD_FAILED = "Model '{tier}' failed to load its model file '{file}'; see the server log."
RETRY_AT = "{error} The next load attempt is in {seconds} s."
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\",:;()/]+/)+[^\s'\",:;()]*")


def load_backoff(failures: int) -> float:
    """Seconds before loading again after `failures` consecutive failures: doubling, capped."""
    return min(settings.LOAD_RETRY_MAX_SECONDS, settings.LOAD_RETRY_SECONDS * 2 ** max(0, failures - 1))


def public_load_error(spec: ModelSpec, exc: BaseException) -> str:
    """What clients, /health and the admin are told: the tier and its model file's name, never a
    server path or an internal exception; the details are in the server log."""
    if isinstance(exc, ServiceError):
        return redact_paths(exc.message, spec.model_path)
    return LOAD_FAILED.format(tier=spec.name, file=os.path.basename(spec.model_path.rstrip("/")) or "?")


def redact_paths(text: str, model_path: str) -> str:
    """`text` with the model path, and any other absolute path, reduced to a file name."""
    if model_path:
        text = text.replace(model_path.rstrip("/"), os.path.basename(model_path.rstrip("/")))
    return _ABSOLUTE_PATH.sub(lambda m: os.path.basename(m.group(0).rstrip("/")), text)


def retry_message(error: str | None, retry_at: float) -> str:
    """The 503 message while a failed configuration waits for its next load attempt."""
    seconds = max(1, round(retry_at - time.time()))
    return RETRY_AT.format(error=error or "The model failed to load.", seconds=seconds)
