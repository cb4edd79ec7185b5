"""`keep_alive`: how long a tier's model stays loaded after its last request (Ollama's semantics).

https://github.com/ollama/ollama/blob/main/docs/faq.md#how-do-i-keep-a-model-loaded-in-memory-or-make-it-unload-immediately

A duration is a number of seconds (`300`, `0.5`), a string of one (`"300"`), or a Go-style
duration string (`"5m"`, `"1h30m"`, `"0.05s"`, `"250ms"`). `0` unloads right after each request;
any negative value means "never" (parsed as `math.inf`).
"""

from __future__ import annotations

import math
import re

NEVER = math.inf
INVALID_DURATION = (
    "must be a duration: seconds as a number, or a string such as \"30s\", \"5m\", \"1h30m\" (0: unload right after "
    "the request; a negative value: never)"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_MAX_TEXT = 32  # longer strings are refused before any parsing


def duration_parse(value: object) -> float:
    """Seconds (math.inf for "never"); ValueError(INVALID_DURATION) for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError(INVALID_DURATION)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and len(value) <= _MAX_TEXT:
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(INVALID_DURATION)
    if math.isnan(seconds):
        raise ValueError(INVALID_DURATION)
    return NEVER if seconds < 0 else seconds


def _parse_text(text: str) -> float:
    try:
        return float(text) if text and not text[-1].isalpha() else _parse_units(text)
    except ValueError:
        raise ValueError(INVALID_DURATION) from None


def _parse_units(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, end = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != end:
            raise ValueError(INVALID_DURATION)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        end = match.end()
    if not body or end != len(body):
        raise ValueError(INVALID_DURATION)
    return sign * total


def keep_alive_bound(requested: float | None, *, default: float, maximum: float) -> float:
    """A request's keep_alive bounded by the tier's maximum; not given: the tier's own."""
    if requested is None:
        return default
    return min(requested, maximum)
