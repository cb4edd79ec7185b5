"""Log lines that name their request, as plain text or JSON lines (LOG_FORMAT).

The request id lives in a context variable: the access middleware (openai_api/access_log.py) sets it
for the request's task, asyncio and asgiref copy it into tasks and `sync_to_async` threads, and
a model's owner thread sets it around each job it serves (inference/scheduler.py), since a thread
hand-over does not carry context by itself.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

# LogRecord attributes that are not extra fields a caller passed.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "request_tag"}


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (`request_id`; `request_tag` is " [id]" or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id_var.get()
        record.request_id = rid
        record.request_tag = f" [{rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then any extra fields.

    An access-log record (`extra={"access": {...}}`) puts its fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": "request" if isinstance(access, dict) else record.getMessage(),
            "request_id": getattr(record, "request_id", "") or None,
        }
        if isinstance(access, dict):
            line.update(access)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line and key not in ("access", "color_message"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def logging_config(*, level: str, log_format: str, service_loggers: tuple[str, ...]) -> dict:
    """The LOGGING dict: one console handler for our loggers and uvicorn's, in `log_format`.

    uvicorn configures its loggers before Django does; naming them here moves them onto our handler,
    at `level` (LOG_LEVEL). Our access line replaces uvicorn's, so `uvicorn.access` is muted.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "llmservice.logs.RequestIdFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"},
            "json": {"()": "llmservice.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["request_id"]}
        },
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            **{name: {"handlers": ["console"], "level": level, "propagate": False} for name in service_loggers},
            "uvicorn": {"handlers": ["console"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
