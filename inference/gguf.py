"""Reading a GGUF file's fixed header, so `manage.py check` can tell a corrupt model file early.

Layout (little-endian): magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata
key-value count. https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import os
import struct

MAGIC = b"GGUF"
KNOWN_VERSIONS = (1, 2, 3)
HEADER = struct.Struct("<4sIQQ")
# Far beyond any real model; a larger count means the header is garbage.
MAX_TENSORS = 1 << 20
MAX_METADATA = 1 << 20

BAD_MAGIC = "not a GGUF file (it starts with {magic!r}, not b'GGUF')"
TOO_SHORT = "not a GGUF file (only {size} bytes)"
BAD_VERSION = "unsupported GGUF version {version} (known: 1-3)"
BAD_COUNTS = "corrupt GGUF header ({tensors} tensors, {metadata} metadata entries)"


def gguf_problem(path: str) -> str | None:
    """What is wrong with the GGUF header of `path` (by file name, not full path), or None."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(HEADER.size)
    except OSError as exc:
        return f"{name}: cannot be read ({exc.strerror or type(exc).__name__})"
    if len(raw) < HEADER.size:
        return f"{name}: {TOO_SHORT.format(size=len(raw))}"
    magic, version, tensors, metadata = HEADER.unpack(raw)
    if magic != MAGIC:
        return f"{name}: {BAD_MAGIC.format(magic=magic)}"
    if version not in KNOWN_VERSIONS:
        return f"{name}: {BAD_VERSION.format(version=version)}"
    if tensors == 0 or tensors > MAX_TENSORS or metadata > MAX_METADATA:
        return f"{name}: {BAD_COUNTS.format(tensors=tensors, metadata=metadata)}"
    return None
