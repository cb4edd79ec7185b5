"""Where to set max_tokens so that generation ends inside a character split across tokens."""

from __future__ import annotations

import codecs


def cut_inside_a_character(pieces: list[bytes]) -> tuple[int, int]:
    """(n, whole) for an answer whose tokens' bytes are `pieces`: its first n tokens end inside a
    character, whose first bytes are those of tokens whole..n-1 (whole > 0: some text comes before).
    The latest such n leaving the most tokens inside the character."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    cuts, whole = [], 0
    for n, piece in enumerate(pieces, 1):
        decoder.decode(piece)
        if not decoder.getstate()[0]:
            whole = n
        elif whole:
            cuts.append((n - whole, n, whole))
    assert cuts, f"no token ends inside a character after some text: {pieces}"
    _, n, whole = max(cuts)
    return n, whole
