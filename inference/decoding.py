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

    Text that might be the start of a stop string is held back until it is decided, and so are the
    first bytes of a character split across tokens. A token's attachment (its logprob) is released
    with the text that completes it. The answer is cut at a stop string, and at `flush()` before
    the first bytes of a character that never completed (generation ended inside it: those bytes
    never show, as U+FFFD or otherwise). At either cut, the attachments of the tokens that added
    nothing before it are dropped with their text (as llama-server drops the stop word's tokens'
    probabilities); a token that straddles the cut, adding some text before it, keeps its attachment.
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
            self._decoder.reset()  # bytes after the stop string never show
            self._cut(cut)
            return self._release(cut)
        return self._release(len(self._held) - self._partial_stop_suffix(self._held))

    def flush(self) -> tuple[str, list[T]]:
        """Everything still held back, once generation has ended (not a stop string: max_tokens, the
        end token). A character whose last bytes never came is cut off with its tokens' attachments."""
        if self._incomplete():
            self._decoder.reset()
            self._cut(len(self._held))
        return self._release(len(self._held))

    def _incomplete(self) -> bool:
        """The decoder holds the first bytes of a character (UTF-8 allows at most 3 such)."""
        return bool(self._decoder.getstate()[0])

    def _cut(self, cut: int) -> None:
        """End the answer at `cut`: the tokens that began at or after it lose their attachments."""
        self._held = self._held[:cut]
        kept = sum(1 for start in self._starts if start < cut)
        del self._attachments[kept:]
        del self._starts[kept:]

    def _release(self, upto: int) -> tuple[str, list[T]]:
        text, self._held = self._held[:upto], self._held[upto:]
        if self._held or self._incomplete():
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
