"""The SECRET_KEY when none is configured: generated once into a file (mode 0600), then reused.

The key signs admin sessions and derives the internal token (registry/client.py), so it must be
secret: a default written in a public file (as `.env.example` once had) is one anyone can use.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# The value `.env.example` shipped before issue 11: refused on a reachable server (llmservice/checks.py).
OLD_DEFAULT_SECRET_KEY = "dev-insecure-change-me"


def secret_key_from_file(path: Path) -> str:
    """The key stored in `path`, creating it (random, mode 0600) on first use.

    Two processes starting together agree on one key: it is written to a private temporary file
    and linked into place, which fails if another process got there first."""
    path = Path(path)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        temporary.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if not key:  # never run with an empty key
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{path} is empty: delete it (a new key is generated) or set SECRET_KEY.")
    return key
