"""Turning a stream of token bytes into text a client may see: UTF-8 safe, stop strings cut.

Pure Python, backend-independent, O(1) per token (llama-cpp-python's own loop re-detokenizes
the whole completion at every token).
"""

from __future__ import annotations

import codecs
from typing import Generic, Sequence, TypeVar

T = TypeVar("T")


class TextAssembler(Generic[T]):
    """Feeds token bytes in; gives out text that can no longer turn into a stop string.

    Text that might be the start of a stop string is held back until it is decided. A token's
    attachment (its logprob) is released with the text that completes it; at a stop string, the
    attachments of tokens that added nothing before it are dropped with the text (as llama-server
    drops the stop word's tokens' probabilities).
    """

    def __init__(self, stops: Sequence[str] = ()):
        self._stops = [s for s in stops if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self._attachments: list[T] = []
        self._starts: list[int] = []  # where each attachment's token began in `_held`
        self.stopped = False

    def feed(self, piece: bytes, attachment: T | None = None) -> tuple[str, list[T]]:
        """Add one token's bytes; return (text to emit now, attachments it releases)."""
        start = len(self._held)
        self._held += self._decoder.decode(piece)
        if attachment is not None:
            self._attachments.append(attachment)
            self._starts.append(start)
        if not self._stops:
            return self._release(len(self._held))
        cut = self._first_stop(self._held)
        if cut is not None:
            self.stopped = True
            self._held = self._held[:cut]
            kept = sum(1 for start in self._starts if start < cut)
            del self._attachments[kept:]
            return self._release(cut)
        return self._release(len(self._held) - self._partial_stop_suffix(self._held))

    def flush(self) -> tuple[str, list[T]]:
        """Everything still held back, once generation has ended without a stop string."""
        if not self.stopped:
            self._held += self._decoder.decode(b"", final=True)
        return self._release(len(self._held))

    def _release(self, upto: int) -> tuple[str, list[T]]:
        text, self._held = self._held[:upto], self._held[upto:]
        if self._held:
            self._starts = [start - upto for start in self._starts]
            return text, []
        released, self._attachments, self._starts = self._attachments, [], []
        return text, released

    def _first_stop(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        return min(found) if found else None

    def _partial_stop_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
