"""The thinking splitter on its own: any split of the text into pieces gives the same answer."""

import pytest

from inference.events import Thinking
from openai_api.serving.reasoning import ReasoningSplitter

TAGS = Thinking("<think>", "</think>")


def split(text: str, thinking: Thinking = TAGS, step: int = 1) -> tuple[str, str]:
    splitter, reasoning, answer = ReasoningSplitter(thinking), [], []
    pieces = [text[i:i + step] for i in range(0, len(text), step)]
    for is_reasoning, piece in [p for chunk in pieces for p in splitter.feed(chunk)] + splitter.flush():
        (reasoning if is_reasoning else answer).append(piece)
    return "".join(reasoning), "".join(answer)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("text, expected", [
    ("<think>a < b</think>\n\nYes.", ("a < b", "Yes.")),
    ("\n <think>x</think>y", ("x", "y")),
    ("No thinking here.", ("", "No thinking here.")),
    ("<thin", ("", "<thin")),  # an unfinished tag is text
    ("<think>cut short", ("cut short", "")),
    ("Answer <think>not split</think>", ("", "Answer <think>not split</think>")),  # only at the start
    ("<think>a</think>b<think>c</think>", ("a", "b<think>c</think>")),  # one block only
])
def test_any_split_gives_the_same_answer(text, expected, step):
    assert split(text, step=step) == expected


def test_a_prompt_that_opened_the_block_starts_in_thinking():
    inside = Thinking("<think>", "</think>", inside=True)
    assert split("hmm</think>\nOK", inside, step=2) == ("hmm", "OK")
    assert split("never closed", inside) == ("never closed", "")
